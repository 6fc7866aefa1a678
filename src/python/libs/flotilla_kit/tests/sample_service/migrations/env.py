from flotilla_kit.migrations import run_env
from flotilla_kit.tests.sample_service.models import Base

run_env(Base.metadata)
