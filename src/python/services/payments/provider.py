"""The simulated payment provider: deterministic outcomes, optional latency and transient failures."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from flotilla_contracts.catalog import Money
from payments.settings import PaymentsSettings

CARD_DECLINED = "card declined"


@dataclass(frozen=True)
class Decision:
    """What the provider did with a capture: captured, or declined with a reason."""

    captured: bool
    reason: str = ""


def decide(amount: Money, card_token: str, *, decline_above: int, declined_card_token: str) -> Decision:
    """The provider's rule, pure: the marked token and amounts above the limit are declined."""
    if card_token == declined_card_token:
        return Decision(captured=False, reason=CARD_DECLINED)
    if amount.amount > decline_above:
        return Decision(
            captured=False, reason=f"amount {amount.amount} {amount.currency} is above the limit of {decline_above}"
        )
    return Decision(captured=True)


class ProviderUnavailable(Exception):
    """The provider did not answer: transient, the same capture may succeed when retried."""


class SimulatedProvider:
    """Captures payments by ``decide``, after an injected latency, failing at an injected rate.

    A capture carries an idempotency key (the order id, as a real provider's API asks for) and its
    attempt number (the event's delivery). Whether it fails is drawn from (seed, key, attempt)
    alone, not from a generator shared by all calls: the same run fails the same payments whatever
    the order in which they arrive or how many instances handle them, and a capture asked again
    within one attempt (its batch was rolled back and ran again) gets the answer it had, so the
    configured rate is the rate per attempt. ``attempts`` and ``failures`` count calls.
    """

    def __init__(
        self,
        *,
        decline_above: int,
        declined_card_token: str,
        latency_ms: int = 0,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.decline_above = decline_above
        self.declined_card_token = declined_card_token
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.seed = seed
        self.attempts = 0
        self.failures = 0

    @classmethod
    def from_settings(cls, settings: PaymentsSettings) -> SimulatedProvider:
        return cls(
            decline_above=settings.decline_above,
            declined_card_token=settings.declined_card_token,
            latency_ms=settings.provider_latency_ms,
            failure_rate=settings.provider_failure_rate,
            seed=settings.provider_seed,
        )

    def fails(self, idempotency_key: str, attempt: int) -> bool:
        """Whether the capture of ``idempotency_key`` fails at this attempt (pure: for tests too)."""
        if self.failure_rate <= 0.0:
            return False
        digest = hashlib.blake2b(f"{self.seed}:{idempotency_key}:{attempt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest) / 2**64 < self.failure_rate

    async def capture(self, amount: Money, card_token: str, *, idempotency_key: str, attempt: int) -> Decision:
        """Capture ``amount`` on the card; raises ProviderUnavailable when ``fails`` says so."""
        self.attempts += 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if self.fails(idempotency_key, attempt):
            self.failures += 1
            raise ProviderUnavailable("the payment provider did not answer (a simulated transient failure)")
        return decide(
            amount, card_token, decline_above=self.decline_above, declined_card_token=self.declined_card_token
        )
