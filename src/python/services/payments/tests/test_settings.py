"""Payments settings from the environment: clear errors for bad values, and batches cut to the latency."""

import pytest

from flotilla_kit.settings import SettingsError, load_settings
from payments.app import default_consumer_options
from payments.settings import PaymentsSettings


def test_the_provider_settings_are_read_from_the_environment():
    settings = load_settings(
        PaymentsSettings,
        {
            "DECLINE_ABOVE": "5000",
            "DECLINED_CARD_TOKEN": "tok_no",
            "PROVIDER_LATENCY_MS": "150",
            "PROVIDER_FAILURE_RATE": "0.25",
            "PROVIDER_SEED": "9",
        },
    )
    assert (settings.decline_above, settings.declined_card_token) == (5000, "tok_no")
    assert (settings.provider_latency_ms, settings.provider_failure_rate, settings.provider_seed) == (150, 0.25, 9)


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("PROVIDER_FAILURE_RATE", "1.5", "<= 1.0"),
        ("PROVIDER_FAILURE_RATE", "nan", ">= 0.0"),
        ("PROVIDER_FAILURE_RATE", "often", "Expected `float`"),
        ("PROVIDER_LATENCY_MS", "-1", ">= 0"),
        # One capture holds the consumer's transaction (and SQLite's write lock) this long.
        ("PROVIDER_LATENCY_MS", "2001", "<= 2000"),
        ("DECLINE_ABOVE", "-1", ">= 0"),
        ("DECLINE_ABOVE", "ten", "Expected `int`"),
        ("DECLINED_CARD_TOKEN", "", "length >= 1"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(variable, value, says):
    with pytest.raises(SettingsError) as refused:
        load_settings(PaymentsSettings, {variable: value})
    [problem] = refused.value.problems
    assert problem.startswith(f"{variable}={value!r}: ") and says in problem


@pytest.mark.parametrize("latency_ms, batch_size", [(0, 500), (1, 500), (10, 100), (200, 5), (1_000, 1), (2_000, 1)])
def test_a_slow_provider_gets_batches_small_enough_to_hold_the_transaction_about_a_second(latency_ms, batch_size):
    settings = PaymentsSettings(provider_latency_ms=latency_ms)
    assert default_consumer_options(settings).batch_size == batch_size
