"""One running instance of a service, as registered and as resolved."""

from __future__ import annotations

import msgspec


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """Where one instance of ``service`` answers; ``instance_id`` is unique within the service."""

    service: str
    instance_id: str
    url: str  # base URL, e.g. "http://127.0.0.1:8001"
    version: str = ""
    started_at: float = 0.0  # unix seconds
    # Where its /metrics and /info answer when they are kept off ``url`` (INTERNAL_PORT); empty: on ``url``.
    internal_url: str = ""
    # Whether callers may route to it through the registry. An instance that resolves its own peers
    # some other way (DNS, a static list) registers only to be seen (the console, operators) and may
    # not be reachable from where a registry-resolving caller runs: resolvers skip it. Entries of
    # older registrants, without the field, are routable, as they were.
    routable: bool = True


instance_encoder = msgspec.json.Encoder()
# Unknown fields are ignored (msgspec's default), so an older reader survives a newer registrant.
instance_decoder = msgspec.json.Decoder(Instance)
