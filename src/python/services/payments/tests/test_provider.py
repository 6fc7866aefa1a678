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


async def _failures(provider: SimulatedProvider, captures: int) -> list[bool]:
    failed = []
    for _ in range(captures):
        try:
            await provider.capture(Money(10, "EUR"), "tok_visa")
        except ProviderUnavailable:
            failed.append(True)
        else:
            failed.append(False)
    return failed


async def test_failures_follow_the_seed():
    first = await _failures(SimulatedProvider(**RULES, failure_rate=0.5, seed=3), 30)
    assert await _failures(SimulatedProvider(**RULES, failure_rate=0.5, seed=3), 30) == first
    assert await _failures(SimulatedProvider(**RULES, failure_rate=0.5, seed=4), 30) != first


async def test_a_provider_failing_at_a_rate_fails_some_captures_and_counts_them():
    provider = SimulatedProvider(**RULES, failure_rate=0.5, seed=1)
    results = []
    for _ in range(40):
        try:
            results.append(await provider.capture(Money(10, "EUR"), "tok_visa"))
        except ProviderUnavailable:
            results.append(None)
    assert 0 < provider.failures < 40 and provider.attempts == 40
    assert results.count(None) == provider.failures
    assert all(r == Decision(captured=True) for r in results if r is not None)


@pytest.mark.parametrize("rate, fails", [(0.0, False), (1.0, True)])
async def test_the_extreme_rates_never_and_always_fail(rate, fails):
    provider = SimulatedProvider(**RULES, failure_rate=rate)
    if fails:
        with pytest.raises(ProviderUnavailable):
            await provider.capture(Money(10, "EUR"), "tok_visa")
    else:
        assert (await provider.capture(Money(10, "EUR"), "tok_visa")).captured
