"""Payments settings: the shared ones, plus the simulated provider's."""

from __future__ import annotations

from typing import Annotated

import msgspec

from flotilla_kit.settings import ServiceSettings


class PaymentsSettings(ServiceSettings, kw_only=True, frozen=True):
    # Amounts above this (in minor units, whatever the currency) are declined.
    decline_above: Annotated[int, msgspec.Meta(ge=0)] = 100_000
    # A card token the provider always declines (what the storefront offers to show a decline).
    declined_card_token: Annotated[str, msgspec.Meta(min_length=1)] = "tok_declined"
    # Latency injected into every capture, to see how the saga behaves with a slow provider.
    provider_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    # Share of captures that fail with a transient error (the consumer retries them with backoff).
    provider_failure_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    # Seeds the failures' random draws: the same seed and events give the same failures.
    provider_seed: int = 0
