"""Request bodies an operation that reads JSON takes: JSON, unencoded, in UTF-8; anything else is 415.

Litestar decodes a ``data`` body as JSON whatever the request's Content-Type says, so a
``text/plain`` body was read as JSON (or refused with a 400 about its syntax). The check runs
where the body is decoded as JSON (``JsonRequest.json``), so operations without a body pay
nothing for it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from flotilla_kit.problems import UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"
_UTF8 = frozenset({"utf-8", "utf8"})


def check_json_body(request: Request[Any, Any, Any]) -> None:
    """Raise UnsupportedMediaType (415) unless the body of ``request`` is declared as JSON, or not declared.

    JSON means ``application/json`` or a ``+json`` type (RFC 6839), in UTF-8 (RFC 8259), with no
    content coding. A body without Content-Type is read as JSON, the one type the operation takes
    (RFC 9110 8.3 lets the recipient decide).
    """
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"content-encoding {encoding!r} is not accepted: send the body unencoded",
            headers={"Accept-Encoding": "identity"},
        )
    media_type, options = request.content_type
    if not media_type:
        return
    is_json = media_type == JSON_MEDIA_TYPE or (media_type.startswith("application/") and media_type.endswith("+json"))
    charset = options.get("charset", "utf-8").lower()
    if not is_json or charset not in _UTF8:
        declared = f"{media_type}; charset={charset}" if is_json else media_type
        raise UnsupportedMediaType(
            f"the body is declared as {declared!r}; this operation takes {JSON_MEDIA_TYPE} (UTF-8)",
            headers={"Accept": JSON_MEDIA_TYPE},
        )


class JsonRequest(Request[Any, Any, Any]):
    """The kit's request class: its JSON body is decoded only when declared as JSON (see ``check_json_body``)."""

    __slots__ = ()

    async def json(self) -> Any:
        check_json_body(self)
        return await super().json()
