"""The simulated provider: a pure decision, and injected failures drawn from a seeded generator."""

import pytest

from flotilla_contracts.catalog import Money
from payments.provider import Decision, ProviderUnavailable, SimulatedProvider, decide

RULES = {"decline_above": 1000, "declined_card_token": "tok_declined"}


def test_an_amount_up_to_the_limit_is_captured():
    assert decide(Money(1000, "EUR"), "tok_visa", **RULES) == Decision(captured=True)
    assert decide(Money(0, "EUR"), "tok_visa", **RULES) == Decision(captured=True)


def test_an_amount_above_the_limit_is_declined_with_the_reason():
    decision = decide(Money(1001, "EUR"), "tok_visa", **RULES)
    assert not decision.captured
    assert decision.reason == "amount 1001 EUR is above the limit of 1000"


def test_the_marked_token_is_declined_whatever_the_amount():
    assert decide(Money(1, "EUR"), "tok_declined", **RULES) == Decision(captured=False, reason="card declined")


KEY = "order-1"


async def _outcome(provider: SimulatedProvider, key: str, attempt: int) -> Decision | None:
    try:
        return await provider.capture(Money(10, "EUR"), "tok_visa", idempotency_key=key, attempt=attempt)
    except ProviderUnavailable:
        return None


async def test_a_failure_depends_on_the_seed_the_payment_and_the_attempt_only():
    keys = [f"order-{i}" for i in range(30)]
    first = SimulatedProvider(**RULES, failure_rate=0.5, seed=3)
    outcomes = {(key, attempt): await _outcome(first, key, attempt) for key in keys for attempt in (1, 2)}
    # Asked in another order, and each twice (a batch that ran again): the same answers.
    again = SimulatedProvider(**RULES, failure_rate=0.5, seed=3)
    for key, attempt in reversed(list(outcomes)):
        assert await _outcome(again, key, attempt) == outcomes[key, attempt]
        assert await _outcome(again, key, attempt) == outcomes[key, attempt]
    other_seed = SimulatedProvider(**RULES, failure_rate=0.5, seed=4)
    assert [await _outcome(other_seed, key, attempt) for key, attempt in outcomes] != list(outcomes.values())


async def test_a_provider_failing_at_a_rate_fails_some_captures_and_counts_them():
    provider = SimulatedProvider(**RULES, failure_rate=0.5, seed=1)
    results = [await _outcome(provider, f"order-{i}", 1) for i in range(40)]
    assert 0 < provider.failures < 40 and provider.attempts == 40
    assert results.count(None) == provider.failures
    assert all(r == Decision(captured=True) for r in results if r is not None)
    assert [r is None for r in results] == [provider.fails(f"order-{i}", 1) for i in range(40)]


@pytest.mark.parametrize("rate, fails", [(0.0, False), (1.0, True)])
async def test_the_extreme_rates_never_and_always_fail(rate, fails):
    provider = SimulatedProvider(**RULES, failure_rate=rate)
    assert [await _outcome(provider, f"order-{i}", 1) is None for i in range(20)] == [fails] * 20
