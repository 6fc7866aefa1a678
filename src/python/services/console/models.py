"""The console's tables (its own SQLite file): the traces it ingested, and the audit log of its actions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Trace(Base):
    """One trace's summary, kept up to date as its spans arrive; ``seq`` orders traces by first arrival,
    which is the order the store drops them in when it is full."""

    __tablename__ = "console_traces"
    __table_args__ = (Index("ix_console_traces_start", "start_ns"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(32), unique=True)
    span_count: Mapped[int] = mapped_column(Integer)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    root_service: Mapped[str] = mapped_column(String(200))
    root_name: Mapped[str] = mapped_column(String(500))
    has_root: Mapped[bool] = mapped_column(Boolean)
    has_error: Mapped[bool] = mapped_column(Boolean)
    services: Mapped[str] = mapped_column(Text)  # sorted, comma-separated


class Span(Base):
    __tablename__ = "console_spans"
    __table_args__ = (
        Index("ix_console_spans_service_name", "service", "name"),
        Index("ix_console_spans_duration", "duration_ns"),
    )

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    parent_span_id: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(200))
    instance: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    duration_ns: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int] = mapped_column(Integer)
    status_message: Mapped[str] = mapped_column(Text)
    attributes: Mapped[str] = mapped_column(Text)  # JSON object
    events: Mapped[str] = mapped_column(Text)  # JSON array
    links: Mapped[str] = mapped_column(Text)  # JSON array


class SpanValue(Base):
    """The scalar attribute values of each span, so that a trace is found by an order or correlation id."""

    __tablename__ = "console_span_values"
    __table_args__ = (Index("ix_console_span_values_value", "value"),)

    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    span_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class AuditEntry(Base):
    """Who did what, when, and how it ended: one row per action asked for, refused ones included."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    caller: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(500))


class LoginLink(Base):
    """A redeemed one-time login link (its nonce), kept until the link would have expired anyway."""

    __tablename__ = "console_login_links"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float] = mapped_column(Float)


class RevokedSession(Base):
    """A session logged out of: its cookie is refused until it would have expired anyway."""

    __tablename__ = "console_revoked_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float)
