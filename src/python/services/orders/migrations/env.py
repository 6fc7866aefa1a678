from flotilla_kit.migrations import run_env
from flotilla_streams.schema import metadata as messaging_metadata
from orders.models import Base

run_env(Base.metadata, messaging_metadata)
