"""Service settings read from environment variables into msgspec Structs.

Each field of a settings Struct maps to the upper-case environment variable of the same name
(``database_url`` <- ``DATABASE_URL``). Values are converted and checked against the field's type
and constraints; every bad value is reported at once, each naming its variable.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar, get_args, get_origin

import msgspec

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]
OtlpUrl = Annotated[str, msgspec.Meta(pattern=r"^(https?://[^\s/]+.*)?$")]  # empty, or an http(s) URL
# OTLP over gRPC is not offered: its exporter package (and grpcio) is not part of the runtime.
OtlpProtocol = Literal["http/protobuf", "http/json"]
TracesSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class SettingsError(ValueError):
    """One or more environment variables hold unusable values; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))


class ServiceSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Settings every service has. A service subclasses this to add its own fields."""

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: Port = 8000
    # Empty means the embedded default: sqlite+aiosqlite in .data/<service>.db.
    database_url: str = ""
    database_echo: bool = False
    database_pool_size: PositiveInt = 10
    # Apply pending migrations on `serve`; production may prefer running `migrate` as its own step.
    migrate_on_start: bool = True
    redis_url: str = ""
    # Names this process among its service's replicas (stream consumer name, registry entry).
    # Empty means "<hostname>-<port>": stable across restarts, so a restarted consumer finds its
    # own pending entries.
    instance_id: str = ""
    # How this service finds others: "none", "redis" (in the registry in the Redis of REDIS_URL),
    # "static" (SERVICE_URLS) or "dns" (DNS_TEMPLATE).
    discovery: Literal["none", "redis", "static", "dns"] = "none"
    # Register this instance in the Redis registry (heartbeats; deregistered on shutdown) whenever
    # REDIS_URL is set, whatever DISCOVERY is: operators and the console see every instance. With
    # DISCOVERY=redis callers find it there, so false leaves it reachable by no other service.
    discovery_register: bool = True
    service_urls: str = ""  # static mode: "catalog=http://a:8001,http://b:8001;inventory=http://c:8002"
    dns_template: str = "http://{service}:8000"  # dns mode: one instance per address of the name
    # The URL others reach this instance at; empty means http://<host>:<PORT>, the host being
    # ADVERTISE_HOST, else HOST, else (HOST a wildcard) the hostname.
    public_url: str = ""
    # The name or IP address others reach this instance at (the registered URLs' host; an IPv6
    # address gets its brackets). In Kubernetes the pod IP: a pod's hostname resolves nowhere else.
    advertise_host: Annotated[str, msgspec.Meta(pattern=r"^[^\s/@?#\[\]]*$")] = ""
    discovery_ttl_seconds: PositiveFloat = 10.0
    log_level: LogLevel = "INFO"
    log_json: bool = True
    max_request_body_bytes: PositiveInt = 1_048_576
    # When set, /metrics and /info are served on this port only (for scrapers and operators), and
    # the public port answers 404 for them; /healthz and /readyz stay on the public port.
    internal_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    shutdown_timeout_seconds: PositiveFloat = 15.0
    # Empty: the commit stamped into the PEX at package time (flotilla_kit.info.stamped_revision).
    git_revision: str = ""
    # How long the events this service publishes stay in their streams (trimmed every minute,
    # never past what a consumer group has not yet handled).
    stream_retention_hours: PositiveFloat = 168.0
    # An entry pending this long at another consumer of a group is taken over by this one: its
    # consumer is presumed dead (killed, or its host gone). Longer than the slowest batch.
    stream_claim_idle_seconds: PositiveFloat = 30.0
    # Traces (flotilla_kit.tracing), under OpenTelemetry's standard variable names. Tracing is on
    # when an endpoint is set and the SDK is not disabled; the base endpoint gets /v1/traces
    # appended, the traces endpoint is used as it is. Both are OTLP over HTTP, in protobuf (the
    # specification's default) or JSON (a third of the CPU per span: flotilla_kit.otlp_json).
    otel_exporter_otlp_endpoint: OtlpUrl = ""
    otel_exporter_otlp_traces_endpoint: OtlpUrl = ""
    otel_exporter_otlp_protocol: OtlpProtocol = "http/protobuf"
    otel_exporter_otlp_traces_protocol: Literal["", "http/protobuf", "http/json"] = ""  # "": the one above
    otel_sdk_disabled: bool = False
    otel_service_name: str = ""  # empty: SERVICE_NAME
    otel_traces_sampler: TracesSampler = "parentbased_always_on"
    otel_traces_sampler_arg: Ratio = 1.0  # the ratio of the *traceidratio samplers

    def resolved_git_revision(self) -> str:
        from flotilla_kit.info import stamped_revision

        return self.git_revision or stamped_revision() or "unknown"

    def resolved_instance_id(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{self.port}"

    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self._reachable_host()}:{self.port}"

    def resolved_internal_url(self) -> str:
        """Where /metrics and /info answer when INTERNAL_PORT is set (empty otherwise: on the public URL)."""
        return f"http://{self._reachable_host()}:{self.internal_port}" if self.internal_port else ""

    def _reachable_host(self) -> str:
        host = self.advertise_host or (self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname())
        return f"[{host}]" if ":" in host else host  # an IPv6 address, as URLs write it

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///.data/{self.service_name}.db"

    def effective_values(self) -> dict[str, object]:
        """Every setting as the service will use it: fields whose empty value means a default, resolved.

        Secrets are included as they are (the CLI masks them). A subclass with defaults of its own
        to resolve extends the result of ``super().effective_values()``.
        """
        values = msgspec.structs.asdict(self)
        values["database_url"] = self.resolved_database_url()
        values["instance_id"] = self.resolved_instance_id()
        values["public_url"] = self.resolved_public_url()
        return values


S = TypeVar("S", bound=msgspec.Struct)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(raw: str, annotation: object) -> object:
    # msgspec's lax mode parses "8001" as int but knows only "true"/"false" for bools; accept the
    # spellings people put in .env files too.
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise msgspec.ValidationError("Expected a boolean (true/false, 1/0, yes/no, on/off)")
    if get_origin(annotation) is Literal and raw not in get_args(annotation):
        allowed = ", ".join(map(str, get_args(annotation)))
        raise msgspec.ValidationError(f"Expected one of: {allowed}")
    return msgspec.convert(raw, annotation, strict=False)


def load_settings(
    cls: type[S], environ: Mapping[str, str] | None = None, *, defaults: Mapping[str, object] | None = None
) -> S:
    """Build ``cls`` from environment variables (``os.environ`` unless given).

    ``defaults`` override the Struct's own defaults (a service sets its name and port this way).
    Raises SettingsError naming every variable whose value is unusable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = dict(defaults or {})
    problems: list[str] = []
    for field in msgspec.structs.fields(cls):
        variable = field.encode_name.upper()
        if variable not in environ:
            continue
        raw = environ[variable]
        try:
            values[field.name] = _coerce(raw, field.type)
        except (msgspec.ValidationError, ValueError) as exc:
            problems.append(f"{variable}={raw!r}: {_describe(exc)}")
    if problems:
        raise SettingsError(problems)
    try:
        return msgspec.convert(values, cls)
    except msgspec.ValidationError as exc:  # a default that breaks a constraint
        raise SettingsError([_describe(exc)]) from None


def _describe(exc: Exception) -> str:
    # msgspec appends " - at `$...`" locating the value; the variable name already locates it.
    return str(exc).split(" - at `", 1)[0]
