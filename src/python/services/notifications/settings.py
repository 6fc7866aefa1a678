"""Notifications settings: the shared ones (the service has none of its own yet)."""

from __future__ import annotations

from flotilla_kit.settings import ServiceSettings


class NotificationsSettings(ServiceSettings, kw_only=True, frozen=True):
    pass
