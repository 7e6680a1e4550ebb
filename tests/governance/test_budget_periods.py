"""Reset periods (runtime/governance/periods.py): Go Bifrost's durations, calendar-aligned and rolling
windows, and OpenAI's reset-header format. Pure functions of an explicit `now`."""

from __future__ import annotations

import calendar

import pytest

from runtime.governance.periods import format_reset, parse_duration, period


def ts(*parts: int) -> float:
    return float(calendar.timegm((*parts, 0, 0, 0)[:6]))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1d", 86400),
        ("1.5d", 129600),
        ("1w", 604800),
        ("1M", 30 * 86400),  # Go approximates a month as 30 days
        ("1Y", 365 * 86400),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "abc", "1x", "d", "1.5.5h", "-5m", "0s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        period(text)


def test_calendar_month_snaps_to_the_first_and_ends_at_the_next() -> None:
    p = period("1M", calendar_aligned=True)
    start, end = p.window(ts(2026, 1, 31, 23, 59, 59))
    assert (start, end) == (ts(2026, 1, 1), ts(2026, 2, 1))
    assert p.window(ts(2026, 2, 1))[0] == ts(2026, 2, 1)
    assert p.window(ts(2024, 2, 29, 12))[1] == ts(2024, 3, 1)  # a 29-day window: not fixed-width


def test_calendar_groups_n_units_from_a_fixed_epoch() -> None:
    q = period("3M", calendar_aligned=True)  # calendar quarters
    assert q.window(ts(2026, 5, 17)) == (ts(2026, 4, 1), ts(2026, 7, 1))
    assert q.window(ts(2026, 12, 31, 23)) == (ts(2026, 10, 1), ts(2027, 1, 1))
    week = period("1w", calendar_aligned=True)
    assert week.window(ts(2026, 11, 28, 20)) == (ts(2026, 11, 23), ts(2026, 11, 30))  # Monday to Monday
    day = period("1d", calendar_aligned=True)
    assert day.window(ts(2026, 11, 28, 20)) == (ts(2026, 11, 28), ts(2026, 11, 29))
    year = period("1Y", calendar_aligned=True)
    assert year.window(ts(2026, 6, 1)) == (ts(2026, 1, 1), ts(2027, 1, 1))


def test_rolling_windows_sit_on_the_anchor_lattice() -> None:
    p = period("1h")
    anchor = ts(2026, 1, 1, 0, 20)
    assert p.window(ts(2026, 1, 1, 5, 10), anchor) == (ts(2026, 1, 1, 4, 20), ts(2026, 1, 1, 5, 20))
    assert p.window(anchor - 100, anchor) == (anchor, anchor + 3600)  # a clock before the anchor clamps
    # calendar_aligned on a sub-day duration is not alignable (Go): it stays rolling
    assert not period("1h", calendar_aligned=True).calendar
    # a non-aligned "1M" is 30 days from the anchor, not the 1st of the month
    m = period("1M")
    assert m.window(ts(2026, 3, 5), ts(2026, 1, 15)) == (ts(2026, 2, 14), ts(2026, 3, 16))


def test_reset_header_format() -> None:
    assert format_reset(0.12) == "120ms"
    assert format_reset(45) == "45s"
    assert format_reset(44.2) == "45s"
    assert format_reset(360) == "6m0s"
    assert format_reset(3723) == "1h2m3s"
