"""flotilla_http: the resilient client for calls between services.

One pooled ``HttpClient`` per process finds instances through flotilla_discovery's ``Balancer``,
propagates deadlines (``x-deadline-ms``), request ids and trace context, retries only where safe
within a retry budget, and keeps a circuit breaker per upstream service. Failures without an
answer are typed ``UpstreamError``s carrying the HTTP status a server should answer with.
"""

from importlib import resources

from flotilla_http.breaker import BreakerState
from flotilla_http.client import HttpClient
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
from flotilla_http.policies import BreakerPolicy, RetryPolicy
from flotilla_http.response import Response, StreamingResponse

# Read here, not through flotilla_kit.info: flotilla_kit imports this lib, not the reverse.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "CircuitOpen",
    "DeadlineExceeded",
    "HttpClient",
    "InvalidHeader",
    "InvalidRequest",
    "NoHealthyInstance",
    "RequestBodyTimeout",
    "Response",
    "RetryPolicy",
    "StreamingResponse",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamTimeout",
]
