"""The services view: every instance in the discovery registry, probed for readiness, version and traffic.

Instances come from flotilla_discovery's Redis registry (the same entries the gateway resolves);
each is asked for ``/readyz``, ``/info`` and ``/metrics``. Request and error rates are the change
of its ``http_requests_total`` over the last RATE_WINDOW_SECONDS of probes (so the first look
shows none); p50 and p99 come from its ``http_request_duration_seconds`` buckets over the same
window, or over its lifetime on the first look. The console's own probes (``/readyz`` and
friends) are left out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
import msgspec
import redis.asyncio as redis

from flotilla_discovery.instance import Instance
from flotilla_discovery.registry import RedisRegistry
from prometheus_client.parser import text_string_to_metric_families

# Routes of the kit's operational endpoints: probes and scrapes, not the service's traffic.
OPERATIONAL_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/info"})
MAX_SERVICES = 500
# Rates and percentiles are over this much of the recent past: long enough to be steady from one
# poll of the page to the next, short enough to show a change within a minute.
RATE_WINDOW_SECONDS = 30.0


class InstanceView(msgspec.Struct, kw_only=True):
    service: str
    instance_id: str
    url: str
    version: str  # from /info, else as registered
    git_revision: str
    started_at: float
    ready: bool
    readiness: str  # "ready", or why not
    requests_per_second: float | None
    error_ratio: float | None  # share of 5xx answers in the interval
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class TrafficSample:
    at: float
    total: float
    errors: float
    buckets: dict[float, float]  # upper bound -> cumulative count


@dataclass
class InstanceProber:
    """Probes instances; remembers each one's recent traffic samples to turn counters into rates."""

    client: redis.Redis
    http: httpx.AsyncClient
    namespace: str = "flotilla"
    _history: dict[tuple[str, str], deque[TrafficSample]] = field(default_factory=dict)

    async def service_names(self) -> list[str]:
        """Services with an entry in the registry (SCAN: a console's page, not a hot path)."""
        prefix = f"{self.namespace}:discovery:{{"
        names: set[str] = set()
        async for key in self.client.scan_iter(match=f"{prefix}*}}:instances", count=500):
            text = key.decode() if isinstance(key, bytes) else key
            names.add(text[len(prefix) : -len("}:instances")])
            if len(names) >= MAX_SERVICES:
                break
        return sorted(names)

    async def registered(self) -> list[Instance]:
        """Every instance in the registry (its heartbeat keeps it there), not probed."""
        registry = RedisRegistry(self.client, namespace=self.namespace)
        found: list[Instance] = []
        for service in await self.service_names():
            found.extend(await registry.instances(service))
        return found

    async def instances(self) -> list[InstanceView]:
        """Every live instance of every service, probed at once."""
        found = await self.registered()
        views = await asyncio.gather(*(self._probe(instance) for instance in found))
        live = {(i.service, i.instance_id) for i in found}
        for key in [key for key in self._history if key not in live]:
            del self._history[key]  # gone instances: forget their samples
        return list(views)

    async def _probe(self, instance: Instance) -> InstanceView:
        base = instance.url.rstrip("/")
        operations = (instance.internal_url or instance.url).rstrip("/")  # INTERNAL_PORT keeps these off url
        ready, info, metrics = await asyncio.gather(
            self._get(base + "/readyz"), self._get(operations + "/info"), self._get(operations + "/metrics")
        )
        readiness = "ready" if ready and ready.status_code == 200 else _why_not_ready(ready)
        info_body = _json_object(info)
        sample = traffic_sample(metrics.text) if metrics is not None and metrics.status_code == 200 else None
        rate = errors = p50 = p99 = None
        if sample is not None:
            previous = self._window_start((instance.service, instance.instance_id), sample)
            if previous is not None and sample.at > previous.at and sample.total >= previous.total:
                interval_total = sample.total - previous.total
                rate = interval_total / (sample.at - previous.at)
                errors = (sample.errors - previous.errors) / interval_total if interval_total else 0.0
                buckets = {le: count - previous.buckets.get(le, 0.0) for le, count in sample.buckets.items()}
            else:
                buckets = sample.buckets
            p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
        return InstanceView(
            service=instance.service,
            instance_id=instance.instance_id,
            url=instance.url,
            version=str(info_body.get("version") or instance.version),
            git_revision=str(info_body.get("git_revision", "")),
            started_at=instance.started_at,
            ready=readiness == "ready",
            readiness=readiness,
            requests_per_second=rate,
            error_ratio=errors,
            p50_ms=p50 * 1000 if p50 is not None else None,
            p99_ms=p99 * 1000 if p99 is not None else None,
        )

    def _window_start(self, key: tuple[str, str], sample: TrafficSample) -> TrafficSample | None:
        """The oldest sample of ``key`` within the window (None on the first look); records ``sample``."""
        history = self._history.setdefault(key, deque())
        if history and sample.total < history[-1].total:
            history.clear()  # the counters went back: the instance restarted under the same id
        while len(history) > 1 and history[1].at <= sample.at - RATE_WINDOW_SECONDS:
            history.popleft()
        start = history[0] if history else None
        history.append(sample)
        return start

    async def _get(self, url: str) -> httpx.Response | None:
        try:
            return await self.http.get(url)
        except httpx.HTTPError:
            return None


def _why_not_ready(response: httpx.Response | None) -> str:
    if response is None:
        return "unreachable"
    detail = _json_object(response).get("detail")
    return f"{response.status_code}: {detail}" if detail else str(response.status_code)


def _json_object(response: httpx.Response | None) -> dict[str, object]:
    if response is None or response.status_code != 200 and response.status_code != 503:
        return {}
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def traffic_sample(text: str, *, at: float | None = None) -> TrafficSample | None:
    """Requests, 5xx answers and latency buckets of a service's /metrics text, operational routes left out."""
    total = errors = 0.0
    buckets: dict[float, float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        return None
    for family in families:
        for sample in family.samples:
            if sample.labels.get("route") in OPERATIONAL_ROUTES:
                continue
            if sample.name == "http_requests_total":
                total += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
            elif sample.name == "http_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return TrafficSample(at=time.monotonic() if at is None else at, total=total, errors=errors, buckets=buckets)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile (seconds) of cumulative histogram ``buckets``, interpolated within a bucket as
    Prometheus' histogram_quantile does; None without observations."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):  # in the open bucket: the highest finite bound is all we know
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def by_service(views: Iterable[InstanceView]) -> list[InstanceView]:
    return sorted(views, key=lambda view: (view.service, view.instance_id))
