from flotilla_kit.migrations import run_env
from flotilla_streams.schema import metadata as messaging_metadata
from inventory.models import Base

run_env(Base.metadata, messaging_metadata)
