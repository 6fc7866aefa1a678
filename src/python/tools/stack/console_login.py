"""The console's way in for a local stack: a secret per ``up``, and one-time login links signed with it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from console.sessions import Sessions
from stack.state import StackState

SECRET_FILE = "console-secret"
LINK_SECONDS = 15 * 60  # as the console's default: a link is for opening now, not for keeping


def new_console_secret(data_dir: Path) -> str:
    """A new secret for this ``up``'s console, kept (owner-only) so that ``stack login`` can sign links."""
    secret = secrets.token_urlsafe(32)
    path = data_dir / SECRET_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as secret_file:
        secret_file.write(secret)
    return secret


def console_link(state: StackState, data_dir: Path) -> str:
    """A one-time login link to the running stack's console."""
    secret = (data_dir / SECRET_FILE).read_text().strip()
    sessions = Sessions(secret.encode(), session_seconds=LINK_SECONDS, link_seconds=LINK_SECONDS)
    return f"{state.console_url}/login?token={sessions.link_token()}"
