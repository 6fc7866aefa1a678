"""A minimal service on the kit's runtime, for tests that run it as a real process, as services run:

    python -m flotilla_kit.tests.demo_service serve --port 8123

It goes through the same CLI and server as every service PEX (``flotilla_kit.cli.main``).
"""

from __future__ import annotations

import sys

import msgspec
from litestar import Litestar, post

from flotilla_kit.app import create_service_app
from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.settings import ServiceSettings


class Note(msgspec.Struct):
    text: str


@post("/notes", sync_to_thread=False)
def echo_note(data: Note) -> Note:
    return data


def create_app(settings: ServiceSettings) -> Litestar:
    return create_service_app(settings, version="0.0.1", route_handlers=[echo_note], database=False)


SERVICE = ServiceDefinition(
    name="demo",
    version="0.0.1",
    settings_class=ServiceSettings,
    create_app=create_app,
    default_port=8123,
    description="A service for the kit's own tests.",
)


if __name__ == "__main__":
    sys.exit(main(SERVICE))
