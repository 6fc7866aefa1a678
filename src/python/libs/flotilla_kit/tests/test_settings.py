from typing import Annotated

import msgspec
import pytest

from flotilla_kit.settings import ServiceSettings, SettingsError, load_settings


class ShopSettings(ServiceSettings, kw_only=True, frozen=True):
    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
    feature_on: bool = False


def test_defaults_apply_when_no_variable_is_set():
    settings = load_settings(ShopSettings, {}, defaults={"service_name": "shop", "port": 8009})
    assert settings.port == 8009
    assert settings.resolved_database_url() == "sqlite+aiosqlite:///.data/shop.db"
    assert settings.page_size == 50


def test_variables_are_converted_to_the_field_types():
    settings = load_settings(
        ShopSettings, {"PORT": "9001", "PAGE_SIZE": "7", "FEATURE_ON": "yes", "SHUTDOWN_TIMEOUT_SECONDS": "2.5"}
    )
    assert (settings.port, settings.page_size, settings.feature_on, settings.shutdown_timeout_seconds) == (
        9001,
        7,
        True,
        2.5,
    )


@pytest.mark.parametrize("raw, expected", [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False)])
def test_booleans_accept_common_spellings(raw, expected):
    assert load_settings(ShopSettings, {"FEATURE_ON": raw}).feature_on is expected


@pytest.mark.parametrize(
    "variable, raw, fragment",
    [
        ("PORT", "eighty", "Expected `int`"),
        ("PORT", "70000", "<= 65535"),
        ("PAGE_SIZE", "0", ">= 1"),
        ("FEATURE_ON", "maybe", "Expected a boolean"),
        ("LOG_LEVEL", "LOUD", "one of: DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "-1", "> 0"),
    ],
)
def test_a_bad_value_is_reported_with_its_variable(variable, raw, fragment):
    with pytest.raises(SettingsError) as caught:
        load_settings(ShopSettings, {variable: raw})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{variable}={raw!r}: ")
    assert fragment in problem


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(SettingsError) as caught:
        load_settings(ShopSettings, {"PORT": "x", "PAGE_SIZE": "y", "HOST": "0.0.0.0"})
    assert [p.split("=")[0] for p in caught.value.problems] == ["PORT", "PAGE_SIZE"]
    assert "PORT='x'" in str(caught.value)


def test_unrelated_environment_variables_are_ignored():
    assert load_settings(ShopSettings, {"HOME": "/root", "UNKNOWN_SETTING": "x"}).port == 8000
