"""Entry point of console.pex: `console serve`, `console migrate`, `console --help`."""

from __future__ import annotations

import sys

from console.settings import ConsoleSettings

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version


def _create_app(settings: ConsoleSettings) -> object:
    from console.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="console",
    version=read_version("console"),
    settings_class=ConsoleSettings,
    create_app=_create_app,
    default_port=8006,
    migrations="console.migrations",
    description="The operators' console: services, streams, dead letters and traces (OTLP/HTTP ingestion).",
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
