"""Values of fields named in CONSOLE_MASKED_FIELDS are never shown: not in a span's attributes, not in a
dead letter's payload."""

from __future__ import annotations

from typing import Any

MASK = "***"


def masked_names(setting: str) -> frozenset[str]:
    """The field names of the comma-separated ``setting``, in lower case."""
    return frozenset(name.strip().lower() for name in setting.split(",") if name.strip())


def is_masked(key: str, names: frozenset[str]) -> bool:
    """Whether ``key`` is one of ``names``, whole or as its last dotted part (``http.request.header.authorization``)."""
    lowered = key.lower()
    return lowered in names or lowered.rsplit(".", 1)[-1] in names


def mask(value: Any, names: frozenset[str]) -> Any:
    """``value`` with the value of every field named in ``names`` replaced by MASK, at any depth."""
    if not names:
        return value
    if isinstance(value, dict):
        return {key: MASK if is_masked(str(key), names) else mask(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, names) for item in value]
    return value
