"""Entry point of gateway.pex: `gateway serve`, `gateway keygen`, `gateway token`, `gateway --help`."""

from __future__ import annotations

import sys

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version
from gateway.dev_tokens import keygen_command, token_command
from gateway.settings import GatewaySettings


def _create_app(settings: GatewaySettings) -> object:
    from gateway.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="gateway",
    version=read_version("gateway"),
    settings_class=GatewaySettings,
    create_app=_create_app,
    default_port=8000,
    description="The public entry point: routes /api/<service>/... to services, verifies tokens, limits rates.",
    commands=[keygen_command, token_command],
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
