"""Orders settings that cannot work together are refused at start, naming the variables."""

import pytest

from flotilla_kit.settings import SettingsError, load_settings
from orders.settings import OrdersSettings


def test_a_lock_timeout_shorter_than_the_catalog_budget_is_refused():
    # A request still waiting for its prices would see its key taken over by the client's retry.
    environ = {"IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "2", "CATALOG_TIMEOUT_SECONDS": "3"}
    with pytest.raises(SettingsError, match="IDEMPOTENCY_LOCK_TIMEOUT_SECONDS"):
        load_settings(OrdersSettings, environ, defaults={"service_name": "orders"})


def test_the_defaults_hold_together():
    settings = load_settings(OrdersSettings, {}, defaults={"service_name": "orders"})
    assert settings.idempotency_lock_timeout_seconds > settings.catalog_timeout_seconds
