from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it, so runs in parallel don't clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
