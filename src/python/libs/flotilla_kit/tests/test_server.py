"""The port check a service makes before it serves (flotilla_kit.server.check_port_free)."""

import socket

import pytest

from flotilla_kit import server
from flotilla_kit.server import PortUnavailable, check_port_free


def test_a_port_taken_on_any_address_the_host_resolves_to_is_refused(monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # A host with two addresses, as "localhost" often is (::1, 127.0.0.1): the port is free on
        # the first and taken on the second.
        resolved = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]
        monkeypatch.setattr(server.socket, "getaddrinfo", lambda *_, **__: resolved)
        with pytest.raises(PortUnavailable, match=f"port {port} on two-addresses \\(127.0.0.1\\) is in use"):
            check_port_free("two-addresses", port)


def test_a_free_port_passes_and_stays_free():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # the probe let go of it


def test_a_host_that_does_not_resolve_is_refused_naming_the_port():
    with pytest.raises(PortUnavailable, match="port 1 on no-such-host.invalid"):
        check_port_free("no-such-host.invalid", 1)
