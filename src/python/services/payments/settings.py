"""Payments settings: the shared ones, plus the simulated provider's."""

from __future__ import annotations

from typing import Annotated

import msgspec

from flotilla_kit.settings import ServiceSettings

# The longest injected latency. A capture runs inside the consumer's batch transaction (the
# consumer opens it, with its inbox claim, before any handler runs), so its latency holds that
# transaction open and, on SQLite, the file's write lock, which the outbox relay waits for up to
# the busy timeout (5 s) before it fails a pass. Batches are cut to the latency (app.consumer_options);
# one capture alone must still stay well inside that timeout.
MAX_PROVIDER_LATENCY_MS = 2_000


class PaymentsSettings(ServiceSettings, kw_only=True, frozen=True):
    # Amounts above this are declined. In minor units of whatever currency the order is in: the
    # simulated provider converts nothing (1000 is 10.00 EUR but 1000 JPY).
    decline_above: Annotated[int, msgspec.Meta(ge=0)] = 100_000
    # A card token the provider always declines (what the storefront offers to show a decline).
    declined_card_token: Annotated[str, msgspec.Meta(min_length=1)] = "tok_declined"
    # Latency injected into every capture, to see how the saga behaves with a slow provider.
    provider_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_PROVIDER_LATENCY_MS)] = 0
    # Share of capture attempts that fail with a transient error (the consumer retries them with
    # backoff; past its max_deliveries the request is dead-lettered and the order's deadline cancels it).
    provider_failure_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    # With the order id and the attempt, decides which captures fail: the same seed and events give
    # the same failures, whatever the order of arrival.
    provider_seed: int = 0
