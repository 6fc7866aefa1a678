"""Orders settings: the shared ones, plus the saga's deadlines and the idempotency keys' lifetimes."""

from __future__ import annotations

from flotilla_kit.settings import PositiveFloat, ServiceSettings


class OrdersSettings(ServiceSettings, kw_only=True, frozen=True):
    # Each saga step (stock, then payment) must be answered within this, or the sweeper cancels the order.
    saga_step_timeout_seconds: PositiveFloat = 30.0
    # How often the sweeper looks for orders whose step deadline has passed.
    sweep_interval_seconds: PositiveFloat = 1.0
    # A request holding an Idempotency-Key this long is presumed crashed: a retry may take the key over.
    idempotency_lock_timeout_seconds: PositiveFloat = 60.0
    # How long a key's first answer is kept for replays (Stripe keeps them 24 hours).
    idempotency_key_ttl_seconds: PositiveFloat = 86_400.0
    # Budget of one order's price look-ups in the catalog, retries included.
    catalog_timeout_seconds: PositiveFloat = 3.0

    def __post_init__(self) -> None:
        # A request still reading its prices would have its key taken over by the client's retry
        # (and then roll its order back): the lock must outlast the longest legitimate request.
        if self.idempotency_lock_timeout_seconds <= 2 * self.catalog_timeout_seconds:
            raise ValueError(
                "IDEMPOTENCY_LOCK_TIMEOUT_SECONDS must be more than twice CATALOG_TIMEOUT_SECONDS "
                f"({self.idempotency_lock_timeout_seconds} <= 2 x {self.catalog_timeout_seconds})"
            )
