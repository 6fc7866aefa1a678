"""HttpClient: calls to other services through discovery, with deadlines, retries and circuit breakers.

Transport: flotilla_http's own HTTP/1.1 connections (``h1.py``, ``pool.py``: asyncio Protocols
whose answers httptools' llhttp parses), chosen by measurement with
src/python/tools/bench/http_clients.py: one granian worker serving a small JSON product over
loopback, on the 2-core dev machine that also runs the upstream; 20000 GETs per run, median of 2
rounds; aiohttp 3.14.5, httpx 0.28.1 (2026-11-25):

| client | concurrency | req/s | p50 ms | p99 ms | client CPU µs/req |
|---|---:|---:|---:|---:|---:|
| aiohttp | 16 | 4246 | 3.50 | 8.06 | 187 |
| httpx | 16 | 498 | 22.82 | 143.97 | 2058 |
| flotilla transport alone | 16 | 8040 | 1.96 | 3.43 | 68 |
| flotilla HttpClient | 16 | 6092 | 2.51 | 5.29 | 126 |
| aiohttp | 64 | 4592 | 13.06 | 33.06 | 194 |
| httpx | 64 | 451 | 102.14 | 629.59 | 2407 |
| flotilla transport alone | 64 | 8583 | 6.30 | 16.22 | 63 |
| flotilla HttpClient | 64 | 6400 | 9.28 | 20.16 | 133 |

httpx's pooled AsyncClient degrades with concurrent requests (encode/httpx#3215); aiohttp served
8-10x its requests and was this client's first transport. But the gateway relays every request
through this client, so the client's CPU per request is the gateway's, and aiohttp spends ~190 µs
of it on its own machinery (request and response objects, tracing hooks, cookies, timers). The
whole HttpClient on its own transport (breaker, retry budget, balancer, deadline and trace
headers, metrics included) costs ~130 µs and serves 1.4x aiohttp's requests. The transport does
what calls between services need: HTTP/1.1 keep-alive, content-length and chunked bodies both
ways, read-until-close answers, raw header pairs, connect timeouts, TLS through asyncio.

A call (``request`` or ``stream``) runs attempts until one gives an answer worth returning:

1. the call's deadline is min(timeout, the current request's deadline); one already passed fails
   with DeadlineExceeded before anything is sent;
2. the service's circuit breaker lets the attempt through or fails fast with CircuitOpen;
3. the balancer picks an instance, preferring one not tried yet in this call;
4. the attempt is sent with ``x-deadline-ms``, ``x-request-id`` and a new ``traceparent`` span
   (with an OpenTelemetry tracer provider installed, a CLIENT span of the attempt: see ``_attempt_span``);
5. on a connect error (nothing sent), a timeout before an answer, or a 502/503/504 answer, it is
   retried when safe (connect errors always; the others only for idempotent calls with a body that
   can be sent again), within the retry budget, after a jittered backoff, before the deadline.

What is left at the end is returned when it is an answer (any status), or raised as an
UpstreamError.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)

from flotilla_discovery.balancer import Balancer, NoInstances
from flotilla_discovery.instance import Instance
from flotilla_http.breaker import BreakerState, CircuitBreaker, Permit
from flotilla_http.budget import RetryBudget
from flotilla_http.context import request_id_var, span_context_of, trace_context_of, trace_var
from flotilla_http.deadline import DEADLINE_HEADER, effective_deadline, header_value
from flotilla_http.errors import (
    CircuitOpen,
    DeadlineExceeded,
    InvalidHeader,
    InvalidRequest,
    NoHealthyInstance,
    RequestBodyTimeout,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from flotilla_http.h1 import ConnectionBroken, MalformedAnswer, RawHeaders
from flotilla_http.metrics import ClientMetrics, method_label
from flotilla_http.policies import BreakerPolicy, RetryPolicy
from flotilla_http.pool import Answer, ConnectFailed, ConnectionPool, Origin
from flotilla_http.response import Response, StreamingResponse
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({502, 503, 504})
# Below this, an attempt could not get an answer anyway: treat the deadline as passed.
_MIN_ATTEMPT_SECONDS = 0.001
# Set by the client on every attempt; a caller's (or an incoming request's relayed) copy is dropped,
# as are headers that describe the connection or body the transport writes itself. The transport
# never waits for 100 Continue, so a relayed Expect would promise the upstream what it never does.
_MANAGED_HEADERS = frozenset(
    {
        DEADLINE_HEADER,
        "x-request-id",
        "traceparent",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "expect",
    }
)
_MANAGED_HEADER_BYTES = frozenset(name.encode() for name in _MANAGED_HEADERS)
_DEADLINE_HEADER_BYTES = DEADLINE_HEADER.encode()
_VISIBLE_ASCII = re.compile("[!-~]*")  # what a percent-encoded path may hold
# RFC 9110: a field name (and a method) is a token; a field value holds no control but HTAB: CR,
# LF or NUL could end the header early and start another header, or another request, upstream.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Names checked already, to their lower-cased form: a gateway relays the same few names over and
# over, and a dict lookup costs a tenth of a match. Bounded (so that callers inventing names cannot
# grow it): emptied when full, so the names in use come back at once; longer names are checked
# each time.
_NAME_MEMO_SIZE = 1024
_NAME_MEMO_LONGEST = 64
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")  # a token, upper-cased
# Failures that say nothing of the upstream's health: neither its breaker nor its ejection hears of
# them. The caller's streamed body was too slow to come (caller_timeout); or the connection was lost
# while that body was still going out (lost_sending_body): a server may refuse a body by answering
# and closing without reading it (RFC 9112 9.6), and when its close resets the connection the
# answer is lost with it, so the loss is no sign of a failing upstream (one that really fails shows
# it on requests whose bodies it did take). A malformed answer is always the upstream's fault.
_NOT_THE_UPSTREAMS_FAULT = frozenset({"caller_timeout", "lost_sending_body"})

Headers = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
Body = AsyncIterable[bytes] | bytes | None
A = TypeVar("A", Response, "_OpenStream")


class _Failure(Exception):
    """An attempt that got no answer; ``kind`` says what happened and whether it may be retried."""

    def __init__(self, kind: str, instance: Instance, detail: str) -> None:
        super().__init__(detail)
        # connect_error (nothing sent) | lost_connection | timeout | body_timeout (the answer's body)
        # | caller_timeout (the deadline passed while waiting on the caller's own streamed body)
        # | lost_sending_body (lost while the caller's streamed body was still going out)
        # | malformed_answer (the upstream's answer is not HTTP/1.1 as the transport takes it)
        self.kind = kind
        self.instance = instance


class _CallerBodyFailed(Exception):
    """The caller's body source raised ``error`` (its own caller gone, a body over its limit): the
    caller's failure, never the upstream's. The client raises ``error`` itself to the caller."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _OpenStream:
    """An answer whose body is still on the wire; ``close`` gives back the connection and the instance."""

    def __init__(self, answer: Answer, instance: Instance, release: Callable[[], None]) -> None:
        self.answer = answer
        self.instance = instance
        self.status = answer.status
        self._release = release
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()
        self.answer.release()  # back to the pool when read whole, else the connection is dropped


class _OpenedOnEnter:
    """What ``HttpClient.stream`` returns: the call is made on entering, its connection let go on leaving."""

    __slots__ = ("_deadline", "_open", "_opened", "_service")

    def __init__(self, open_: Callable[[], Awaitable[_OpenStream]], service: str, deadline: float) -> None:
        self._open = open_
        self._service = service
        self._deadline = deadline
        self._opened: _OpenStream | None = None

    async def __aenter__(self) -> StreamingResponse:
        self._opened = opened = await self._open()
        return StreamingResponse(self._service, opened.answer, opened.instance, self._deadline)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._opened is not None:
            self._opened.close()


class _StreamBody:
    """A request body to stream, fed to each attempt anew; ``started`` once a chunk has been taken.

    Each attempt gets its own generator over one shared iterator, so an attempt that never reads
    (connect refused) leaves the body whole for the next, and closing its generator closes nothing.
    What the source raises comes out as _CallerBodyFailed, so that no transport or timeout error
    of the caller's is taken for the upstream's; ``waiting`` stays set when the attempt is cancelled
    (its deadline, or the answer came first) while the source had not given its next chunk, and
    the body then counts as started: the source may be spent.
    """

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._iterator = aiter(source)
        self.started = False
        self.waiting = False
        self.finished = False

    async def attempt_body(self) -> AsyncIterator[bytes]:
        while True:
            self.waiting = True
            try:
                chunk = await anext(self._iterator)
            except StopAsyncIteration:
                self.waiting = False
                self.finished = True
                return
            except Exception as error:
                self.waiting = False
                raise _CallerBodyFailed(error) from error
            except BaseException:
                # Cancelled while the source was giving its next chunk (the deadline, or the
                # answer came first): that ends a source that is an async generator, so no other
                # attempt may send it, as if it had started. ``waiting`` stays set.
                self.started = True
                raise
            self.waiting = False
            self.started = True
            yield chunk


class _Call(Generic[A]):
    """What one call needs across its attempts."""

    def __init__(self, service: str, method: str, deadline: float, idempotent: bool, body: _StreamBody | None) -> None:
        self.service = service
        self.method = method
        self.method_bytes = method.encode("ascii")
        self.deadline = deadline
        self.idempotent = idempotent
        self.stream_body = body
        self.caller_failed = False  # the caller's body source raised: its fault, not the upstream's
        self.path = ""
        self.traceparent: str | None = None  # the current attempt's, when it has a span

    def may_resend(self) -> bool:
        """Whether a request that may have reached the upstream can be sent again."""
        return self.idempotent and (self.stream_body is None or not self.stream_body.started)

    def may_retry_after(self, outcome: A | _Failure) -> str | None:
        """The retry reason when ``outcome`` may be retried, else None."""
        if isinstance(outcome, _Failure):
            if outcome.kind == "connect_error":
                return outcome.kind if self.stream_body is None or not self.stream_body.started else None
            if outcome.kind in ("timeout", "lost_connection", "malformed_answer") and self.may_resend():
                return outcome.kind
            return None
        if outcome.status in RETRY_STATUSES and self.may_resend():
            return f"status_{outcome.status}"
        return None


class HttpClient:
    """The process's pooled client for calls to other services, found through ``balancer``.

    Start it once (``await client.start()`` or ``async with client``) and share it; it is meant for
    one event loop. ``default_timeout`` is each call's time budget in seconds, retries included.
    ``metrics_registry`` is where its metrics go (a private registry when None, so several clients
    may live in one process, e.g. in tests). ``clock`` (seconds, monotonic) drives breakers and
    retry budgets and is injectable for tests; deadlines always use ``time.monotonic``.
    """

    def __init__(
        self,
        balancer: Balancer,
        *,
        default_timeout: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        breaker: BreakerPolicy = BreakerPolicy(),
        metrics_registry: CollectorRegistry | None = None,
        connect_timeout: float = 1.0,
        max_connections: int = 512,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if default_timeout <= 0:
            raise ValueError(f"default_timeout must be positive, not {default_timeout}")
        self.balancer = balancer
        self.default_timeout = default_timeout
        self.retry_policy = retry
        self.breaker_policy = breaker
        self.metrics_registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
        self.metrics = ClientMetrics(self.metrics_registry)
        self._call_outcomes = functools.cache(self.metrics.requests.labels)  # children by label values
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._clock = clock
        self._rng = rng or random.Random()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._origins: dict[str, Origin] = {}
        self._checked_names: dict[bytes, bytes] = {}  # header names found to be tokens, lower-cased
        self._pool: ConnectionPool | None = None
        # Traced when a tracer provider is installed by the time the client is made (flotilla_kit
        # installs the SDK's at start-up, before its components): off, no span code runs at all.
        self._tracer = _installed_tracer()

    async def start(self) -> None:
        """Open the connection pool (in the running event loop). Starting twice is a no-op."""
        if self._pool is None:
            self._pool = ConnectionPool(limit=self._max_connections, connect_timeout=self._connect_timeout)

    async def close(self) -> None:
        """Close the pool; calls in flight fail. Closing twice is a no-op."""
        # The balancer may outlive this client; started again, the client makes new breakers.
        breakers, self._breakers = self._breakers, {}
        for service, breaker in breakers.items():
            self.balancer.remove_registration_listener(service, breaker.instance_registered)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> HttpClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def breaker_state(self, service: str) -> BreakerState:
        """The state of ``service``'s circuit (closed for a service not called yet)."""
        return self._breaker(service).state

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Headers | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """Call ``method path`` on an instance of ``service`` and read the whole answer.

        ``path`` is sent as given (already percent-encoded, query included). ``json`` is encoded with
        msgspec (Structs welcome); give it or ``content``, not both. ``idempotent`` overrides the
        method's default (GET, HEAD, OPTIONS, PUT, DELETE are) and decides what may be retried.
        Every answer is returned, 4xx and 5xx included. Raises DeadlineExceeded, CircuitOpen,
        NoHealthyInstance, UpstreamConnectError, UpstreamTimeout (all UpstreamError);
        TypeError for a header pair that mixes bytes and str;
        InvalidHeader (a header name that is not a token, a value with CR, LF or NUL) and
        InvalidRequest (a bad method or path), both ValueErrors raised before anything is sent;
        ValueError for both bodies.
        """
        if json is not None and content is not None:
            raise ValueError("give json or content, not both")
        request_headers = _headers(headers, self._checked_names)
        if json is not None:
            content = msgspec.json.encode(json)
            if not any(name == b"content-type" for name, _ in request_headers):
                request_headers.append((b"content-type", b"application/json"))
        call: _Call[Response] = self._new_call(service, method, path, timeout, idempotent, None)
        target = path.encode("ascii")

        async def send(instance: Instance, attempt_deadline: float, release: Callable[[], None]) -> Response:
            try:
                return await self._send_whole(call, instance, target, request_headers, content, attempt_deadline)
            finally:
                release()

        return await self._measured(call, self._attempts(call, send))

    def stream(
        self,
        service: str,
        method: str,
        path: str,
        *,
        headers: Headers | None = None,
        body: Body = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> AbstractAsyncContextManager[StreamingResponse]:
        """Call ``method path`` on ``service``; entering gives the answer with its body still to read.

        For relaying large bodies: ``body`` may be an async iterable of chunks (streamed, chunked
        encoding), and the answer's body is read with ``iter_chunks``; neither is held whole.
        Retries as ``request`` does until the answer's headers arrive, except that once a streamed
        ``body`` has started to be sent it is never sent again (bytes bodies are). The deadline
        covers the whole exchange, body included. The answer is not decompressed, and the client adds
        no Accept-Encoding of its own. Raises as ``request``, and RequestBodyTimeout (not an
        UpstreamError: the caller's fault) when the deadline passes while waiting on the next chunk
        of a streamed ``body``; ``iter_chunks`` raises UpstreamTimeout or UpstreamConnectError
        when the body does not arrive whole.
        """
        stream_body = _StreamBody(body) if body is not None and not isinstance(body, bytes) else None
        content = body if isinstance(body, bytes) else None
        request_headers = _headers(headers, self._checked_names)
        call: _Call[_OpenStream] = self._new_call(service, method, path, timeout, idempotent, stream_body)
        target = path.encode("ascii")

        async def send(instance: Instance, attempt_deadline: float, release: Callable[[], None]) -> _OpenStream:
            try:
                return await self._send_streaming(
                    call, instance, target, request_headers, content, attempt_deadline, release
                )
            except BaseException:
                release()
                raise

        return _OpenedOnEnter(lambda: self._measured(call, self._attempts(call, send)), service, call.deadline)

    # ------------------------------------------------------------------ attempts

    def _new_call(
        self,
        service: str,
        method: str,
        path: str,
        timeout: float | None,
        idempotent: bool | None,
        body: _StreamBody | None,
    ) -> _Call[Any]:
        method = method.upper()
        if not _METHOD.fullmatch(method):
            raise InvalidRequest(f"method {method!r} is not a token")
        _check_path(path)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        deadline = effective_deadline(self.default_timeout if timeout is None else timeout)
        is_idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        call: _Call[Any] = _Call(service, method, deadline, is_idempotent, body)
        call.path = path
        return call

    async def _measured(self, call: _Call[A], attempts: Awaitable[A]) -> A:
        outcome = "error"
        try:
            answer = await attempts
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except DeadlineExceeded:
            outcome = "deadline_exceeded"
            raise
        except CircuitOpen:
            outcome = "circuit_open"
            raise
        except NoHealthyInstance:
            outcome = "no_instance"
            raise
        except UpstreamConnectError:
            outcome = "connect_error"
            raise
        except UpstreamTimeout:
            outcome = "timeout"
            raise
        except RequestBodyTimeout:
            outcome = "caller_error"
            raise
        except Exception:
            # The caller's own body source failing (its client gone, its body over a limit) is
            # re-raised as it is: the metric still says whose fault it was.
            if call.caller_failed:
                outcome = "caller_error"
            raise
        else:
            outcome = "ok" if answer.status < 400 else "client_error" if answer.status < 500 else "server_error"
            return answer
        finally:
            self._call_outcomes(call.service, method_label(call.method), outcome).inc()

    async def _attempts(self, call: _Call[A], send: Callable[[Instance, float, Callable[[], None]], Awaitable[A]]) -> A:
        """Run attempts of ``call``; return the last answer or raise what the last failure means."""
        policy = self.retry_policy
        breaker = self._breaker(call.service)
        budget = self._budget(call.service)
        budget.record_call()
        tried: list[str] = []
        last: A | _Failure | None = None
        reason: str | None = None
        try:
            for attempt in range(1, policy.max_attempts + 1):
                if last is not None:
                    reason = call.may_retry_after(last)
                    if reason is None or not await self._back_off(call, budget, attempt):
                        break
                if call.deadline - time.monotonic() < _MIN_ATTEMPT_SECONDS:
                    if last is None:
                        raise DeadlineExceeded(call.service, "deadline passed before the call was sent")
                    break
                try:
                    permit = breaker.acquire()
                except CircuitOpen:
                    if last is None:
                        raise
                    break
                try:
                    instance = await self._choose(call.service, tried)
                except NoInstances as error:
                    if tried:
                        # A retry with nothing left to try: this call's failures are counted already.
                        breaker.abandon(permit)
                    else:
                        # Every instance gone or ejected: the service is down as far as callers can
                        # tell, which is what the breaker is for (it then fails fast until a probe).
                        breaker.record_no_instance(permit, error)
                    if last is None:
                        raise NoHealthyInstance(call.service, error.reason) from error
                    break
                if last is not None:
                    self.metrics.retries.labels(call.service, reason).inc()
                    if not isinstance(last, _Failure):
                        _close(last)  # the answer we retry instead of returning
                tried.append(instance.instance_id)
                last = await self._attempt(call, instance, permit, send, attempt)
        except BaseException:
            if last is not None and not isinstance(last, _Failure):
                _close(last)  # an open stream nobody will get
            raise
        if last is None:  # max_attempts >= 1, and every path above either set it or raised
            raise AssertionError("no attempt made")
        if isinstance(last, _Failure):
            raise _error(call.service, last)
        return last

    async def _attempt(
        self,
        call: _Call[A],
        instance: Instance,
        permit: Permit,
        send: Callable[[Instance, float, Callable[[], None]], Awaitable[A]],
        attempt: int = 1,
    ) -> A | _Failure:
        """One attempt on ``instance``, reporting its outcome to the breaker and the balancer."""
        breaker = self._breaker(call.service)
        per_try = self.retry_policy.per_try_timeout
        attempt_deadline = call.deadline if per_try is None else min(call.deadline, time.monotonic() + per_try)
        sent_at = self.balancer.acquire(instance)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.balancer.release(instance)

        span = self._attempt_span(call, instance, attempt)
        sending = send(instance, attempt_deadline, release)
        if span is not None:
            sending = _traced(span, sending)
        try:
            answer = await sending
        except _Failure as failure:
            if failure.kind in _NOT_THE_UPSTREAMS_FAULT:
                breaker.abandon(permit)
                return failure
            breaker.record(permit, failed=True)
            if failure.kind != "body_timeout":
                self.balancer.report_failure(instance)
            return failure
        except _CallerBodyFailed as failure:
            breaker.abandon(permit)
            call.caller_failed = True
            caller_error = failure.error
        except BaseException:
            breaker.abandon(permit)
            raise
        else:
            breaker.record(permit, failed=answer.status >= 500)
            self.balancer.report_success(instance, sent_at=sent_at)  # a late answer must not end an ejection
            return answer
        raise caller_error  # outside the except clause: the caller's exception as it raised it

    async def _back_off(self, call: _Call[Any], budget: RetryBudget, attempt: int) -> bool:
        """Wait before attempt number ``attempt``; False when the retry must not happen."""
        if not budget.try_spend_retry():
            self.metrics.retries_denied.labels(call.service).inc()
            return False
        policy = self.retry_policy
        cap = min(policy.max_backoff, policy.base_backoff * 2 ** (attempt - 2))
        delay = self._rng.uniform(0, cap)
        if time.monotonic() + delay + _MIN_ATTEMPT_SECONDS >= call.deadline:
            return False
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    async def _choose(self, service: str, tried: list[str]) -> Instance:
        """An instance not tried yet in this call, else any (raises NoInstances when none at all)."""
        if tried:
            try:
                return await self.balancer.choose(service, exclude=tried)
            except NoInstances:
                pass
        return await self.balancer.choose(service)

    # ------------------------------------------------------------------ sending

    def _pool_or_fail(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError("HttpClient is not started: await client.start() (or use async with) first")
        return self._pool

    def _origin(self, instance: Instance) -> Origin:
        origin = self._origins.get(instance.url)
        if origin is None:
            origin = self._origins[instance.url] = Origin.parse(instance.url)
        return origin

    def _attempt_span(self, call: _Call[Any], instance: Instance, attempt: int) -> Span | None:
        """A CLIENT span for an attempt, whose context the attempt's ``traceparent`` carries; None
        (and the ``traceparent`` a child of ``trace_var``, as without OpenTelemetry) while no tracer
        provider is installed.

        One span per attempt, as the HTTP semantic conventions ask: a retry is a span of its own,
        with ``http.request.resend_count``. Its parent is the current span, else (code that only
        set ``trace_var``) the trace context of the request at hand. A streamed answer's span ends
        when the answer's head has arrived.
        """
        tracer = self._tracer
        call.traceparent = None
        if tracer is None:
            return None
        # No span under an unsampled parent (what the samplers decide anyway, as they keep a
        # trace's decision): the context goes on from trace_var, in step with that parent.
        parent = None
        current = otel_trace.get_current_span().get_span_context()
        if current.is_valid:
            if not current.trace_flags.sampled:
                return None
        else:
            trace = trace_var.get()
            if trace is not None:
                if not int(trace.flags, 16) & 1:
                    return None
                parent = otel_trace.set_span_in_context(
                    NonRecordingSpan(span_context_of(trace)), otel_context.Context()
                )
        span = tracer.start_span(call.method, context=parent, kind=SpanKind.CLIENT)
        call.traceparent = trace_context_of(span.get_span_context()).traceparent
        if span.is_recording():
            origin = self._origin(instance)
            span.set_attributes(
                {
                    "http.request.method": call.method,
                    "server.address": origin.host,
                    "server.port": origin.port,
                    # The query is left out: it may hold what a trace store must not keep.
                    "url.full": instance.url.rstrip("/") + call.path.split("?", 1)[0],
                    "peer.service": call.service,
                    "flotilla.instance.id": instance.instance_id,
                }
            )
            if attempt > 1:
                span.set_attribute("http.request.resend_count", attempt - 1)
        return span

    def _attempt_headers(self, headers: RawHeaders, deadline: float, traceparent: str | None) -> RawHeaders:
        attempt_headers = [*headers, (_DEADLINE_HEADER_BYTES, header_value(deadline).encode())]
        request_id = request_id_var.get()
        if request_id is not None:
            attempt_headers.append((b"x-request-id", request_id.encode("latin-1")))
        if traceparent is not None:
            attempt_headers.append((b"traceparent", traceparent.encode("latin-1")))
        else:
            trace = trace_var.get()
            if trace is not None:
                attempt_headers.append((b"traceparent", trace.child().traceparent.encode("latin-1")))
        return attempt_headers

    async def _open(
        self,
        call: _Call[Any],
        instance: Instance,
        path: bytes,
        headers: RawHeaders,
        body: bytes | AsyncIterator[bytes] | None,
        deadline: float,
    ) -> Answer:
        """Send one attempt and wait for the answer's head (raises _Failure when there is none)."""
        pool = self._pool_or_fail()
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                return await pool.request(
                    self._origin(instance),
                    call.method_bytes,
                    path,
                    self._attempt_headers(headers, deadline, call.traceparent),
                    body,
                )
        except ConnectFailed as error:
            raise _Failure("connect_error", instance, str(error)) from error
        except TimeoutError as error:
            if call.stream_body is not None and call.stream_body.waiting:
                message = "the request body to send did not arrive before the deadline"
                raise _Failure("caller_timeout", instance, message) from error
            raise _Failure("timeout", instance, "no answer before the deadline") from error
        except MalformedAnswer as error:
            raise _Failure("malformed_answer", instance, str(error)) from error
        except ConnectionBroken as error:
            source = call.stream_body
            if source is not None and source.started and not source.finished:
                message = f"the connection was lost while the request body was being sent: {error}"
                raise _Failure("lost_sending_body", instance, message) from error
            raise _Failure("lost_connection", instance, str(error)) from error

    async def _send_whole(
        self,
        call: _Call[Response],
        instance: Instance,
        path: bytes,
        headers: RawHeaders,
        content: bytes | None,
        deadline: float,
    ) -> Response:
        answer = await self._open(call, instance, path, headers, content, deadline)
        try:
            body = answer.read_arrived()
            if body is None:
                async with asyncio.timeout(deadline - time.monotonic()):
                    body = await answer.read()
        except TimeoutError as error:
            raise _Failure("body_timeout", instance, "deadline reached") from error
        except ConnectionBroken as error:
            raise _Failure("lost_connection", instance, str(error)) from error
        finally:
            answer.release()
        headers_read = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in answer.headers)
        return Response(answer.status, CIMultiDictProxy(headers_read), body, instance)

    async def _send_streaming(
        self,
        call: _Call[_OpenStream],
        instance: Instance,
        path: bytes,
        headers: RawHeaders,
        content: bytes | None,
        deadline: float,
        release: Callable[[], None],
    ) -> _OpenStream:
        data: bytes | AsyncIterator[bytes] | None = content
        if call.stream_body is not None:
            data = call.stream_body.attempt_body()
        answer = await self._open(call, instance, path, headers, data, deadline)
        return _OpenStream(answer, instance, release)

    # ------------------------------------------------------------------ per service state

    def _breaker(self, service: str) -> CircuitBreaker:
        breaker = self._breakers.get(service)
        if breaker is None:
            breaker = CircuitBreaker(service, self.breaker_policy, clock=self._clock, on_transition=self._on_transition)
            self._breakers[service] = breaker
            self.balancer.add_registration_listener(service, breaker.instance_registered)  # recover at once
            self.metrics.breaker_state.labels(service).set(BreakerState.CLOSED)
        return breaker

    def _budget(self, service: str) -> RetryBudget:
        budget = self._budgets.get(service)
        if budget is None:
            policy = self.retry_policy
            budget = RetryBudget(
                ratio=policy.budget_ratio,
                min_per_second=policy.budget_min_per_second,
                window=policy.budget_window,
                clock=self._clock,
            )
            self._budgets[service] = budget
        return budget

    def _on_transition(self, service: str, old: BreakerState, new: BreakerState) -> None:
        self.metrics.breaker_state.labels(service).set(new)
        self.metrics.breaker_transitions.labels(service, old.name.lower(), new.name.lower()).inc()
        # Every caller of the service fails fast while it is open: operators must see why, and when it ends.
        if new is BreakerState.OPEN:
            retry_after = self.breaker_policy.open_seconds
            log.warning(
                "circuit of %s opened (was %s): calls fail fast for %.1fs", service, old.name.lower(), retry_after
            )
        elif new is BreakerState.CLOSED:
            log.info("circuit of %s closed: calls go through again", service)
        else:
            log.info("circuit of %s half-open: probing", service)


def _headers(headers: Headers | None, checked_names: dict[bytes, bytes]) -> RawHeaders:
    """The caller's headers minus those the client sets itself (repeats kept), ready for the wire.

    Bytes pairs (as a server received them: the gateway relaying) and str pairs (latin-1 encoded)
    are checked alike; raises InvalidHeader for a name that is not a token or a value holding a
    control other than HTAB, TypeError for a pair of bytes and str. On the gateway's path for every request: a lookup in ``checked_names`` (the memo of
    names found good) per name and one precompiled search per value.
    """
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    result: RawHeaders = []
    for name, value in pairs:
        if isinstance(name, bytes) and isinstance(value, bytes):
            name_bytes, value_bytes = name, value
        elif isinstance(name, bytes) or isinstance(value, bytes):
            raise TypeError(f"header {name!r}: give the name and the value both as bytes or both as str")
        else:
            try:
                name_bytes, value_bytes = str(name).encode("latin-1"), str(value).encode("latin-1")
            except UnicodeEncodeError:
                raise InvalidHeader(str(name), "not latin-1 text") from None
        lowered = checked_names.get(name_bytes)
        if lowered is None:
            if _TOKEN.fullmatch(name_bytes) is None:
                raise InvalidHeader(name_bytes.decode("latin-1"), "the name is not a token")
            lowered = name_bytes.lower()
            if len(name_bytes) <= _NAME_MEMO_LONGEST:
                if len(checked_names) >= _NAME_MEMO_SIZE:
                    checked_names.clear()
                checked_names[name_bytes] = lowered
        if _UNSAFE_IN_VALUE.search(value_bytes) is not None:
            raise InvalidHeader(name_bytes.decode("latin-1"), "the value holds a control character (CR, LF, NUL...)")
        if lowered not in _MANAGED_HEADER_BYTES:
            result.append((lowered, value_bytes))
    return result


def _check_path(path: str) -> None:
    """Raises InvalidRequest for a path that is not an absolute, percent-encoded path (query allowed)."""
    if not path.startswith("/") or path.startswith("//"):
        raise InvalidRequest(f"path must start with a single '/': {path!r}")
    if not _VISIBLE_ASCII.fullmatch(path):
        raise InvalidRequest(f"path must be percent-encoded, without spaces or controls: {path!r}")


def _installed_tracer() -> Tracer | None:
    """The global tracer provider's tracer, or None while none is installed (opentelemetry-api's
    no-op): the client never imports the service runtime that installs the SDK (flotilla_kit)."""
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return None
    return provider.get_tracer("flotilla_http")


async def _traced(span: Span, sending: Awaitable[A]) -> A:
    """``sending``, ending ``span`` with its outcome: the answer's status, or why there was none."""
    try:
        answer = await sending
    except BaseException as error:
        if span.is_recording():
            kind = error.kind if isinstance(error, _Failure) else type(error).__qualname__
            if isinstance(error, _CallerBodyFailed):
                kind = "caller_error"
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()
        raise
    if span.is_recording():
        span.set_attribute("http.response.status_code", answer.status)
        if answer.status >= 400:
            span.set_attribute("error.type", str(answer.status))
            span.set_status(Status(StatusCode.ERROR))
    span.end()
    return answer


def _close(answer: Response | _OpenStream) -> None:
    if isinstance(answer, _OpenStream):
        answer.close()


def _error(service: str, failure: _Failure) -> UpstreamError | RequestBodyTimeout:
    if failure.kind == "caller_timeout":
        return RequestBodyTimeout(service, f"the request body did not arrive in time ({failure})")
    if failure.kind in ("timeout", "body_timeout"):
        return UpstreamTimeout(service, f"no answer before the deadline ({failure})", instance=failure.instance)
    if failure.kind == "connect_error":
        return UpstreamConnectError(service, f"cannot connect ({failure})", instance=failure.instance)
    if failure.kind == "malformed_answer":
        return UpstreamConnectError(service, f"malformed answer ({failure})", instance=failure.instance)
    return UpstreamConnectError(service, f"connection lost before an answer ({failure})", instance=failure.instance)
