from __future__ import annotations

import time

import pytest

from flotilla_http.deadline import deadline_var, parse_deadline_header, remaining


def test_header_value_becomes_an_absolute_monotonic_deadline():
    before = time.monotonic()
    deadline = parse_deadline_header("1500")
    after = time.monotonic()

    assert deadline is not None
    assert before + 1.5 <= deadline <= after + 1.5


def test_header_accepts_bytes_and_surrounding_spaces():
    assert parse_deadline_header(b" 250 ") is not None


@pytest.mark.parametrize("value", [None, "", "abc", "-5", "1.5", "1e3", "٣", "99999999999999999999"])
def test_invalid_header_values_mean_no_deadline(value):
    assert parse_deadline_header(value) is None


def test_remaining_is_none_without_a_deadline_and_never_negative():
    assert remaining() is None
    token = deadline_var.set(time.monotonic() - 5)
    try:
        assert remaining() == 0.0
    finally:
        deadline_var.reset(token)
