"""Entry point of payments.pex: `payments serve`, `payments migrate`, `payments dlq`, `payments --help`."""

from __future__ import annotations

import sys

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version
from flotilla_streams.cli import dlq_command
from payments.settings import PaymentsSettings


def _create_app(settings: PaymentsSettings) -> object:
    from payments.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="payments",
    version=read_version("payments"),
    settings_class=PaymentsSettings,
    create_app=_create_app,
    default_port=8004,
    migrations="payments.migrations",
    description="Payments of orders, through a simulated provider: captures, declines and refunds.",
    commands=[dlq_command],
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
