from flotilla_kit.migrations import run_env
from flotilla_kit.tests.sample_drifted.models import Base

run_env(Base.metadata)
