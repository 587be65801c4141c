"""``sigil.times``: epoch milliseconds to and from UTC datetimes, exactly (integer arithmetic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from sigil.times import from_ms, iso, iso_z, to_ms, to_ms_ceil

MS = st.integers(min_value=-(2**40), max_value=2**45)


@given(MS)
def test_round_trip_is_exact(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms
    assert to_ms_ceil(from_ms(ms)) == ms


@given(MS, st.integers(min_value=1, max_value=999))
def test_sub_millisecond_rounds_down_and_up(ms: int, micros: int) -> None:
    dt = from_ms(ms) + timedelta(microseconds=micros)
    assert to_ms(dt) == ms
    assert to_ms_ceil(dt) == ms + 1


def test_other_zones_and_naive_times() -> None:
    dt = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert to_ms(dt) == 1_704_067_200_000
    assert to_ms(datetime(2024, 1, 1)) == 1_704_067_200_000  # naive: taken as UTC
    assert from_ms(1_704_067_200_000) == datetime(2024, 1, 1, tzinfo=UTC)


def test_text_forms() -> None:
    assert iso_z(1_704_067_200_999) == "2024-01-01T00:00:00Z"
    assert iso(1_704_067_200_000) == "2024-01-01T00:00:00+00:00"
