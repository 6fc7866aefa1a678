"""Errors a caller of discovery may need to tell apart."""

from __future__ import annotations


class NoInstances(Exception):
    """No healthy instance of ``service`` is known: answer 503, or try again later."""

    def __init__(self, service: str, reason: str = "no healthy instance") -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


class DiscoveryUnavailable(NoInstances):
    """The source of instances (Redis, DNS) cannot be reached and nothing is cached for ``service``.

    A kind of ``NoInstances`` so that code which answers "no instance" covers it without knowing it.
    """
