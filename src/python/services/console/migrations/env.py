from console.models import Base

from flotilla_kit.migrations import run_env

run_env(Base.metadata)
