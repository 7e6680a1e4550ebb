"""Reset periods of budgets and rate limits: Go Bifrost's duration strings and the window "now" is in.

Durations follow Go Bifrost's `ParseDuration` (framework/configstore/tables): `Nd` = N x 24 h, `Nw` = N x 7 d,
`NM` = N x 30 d, `NY` = N x 365 d, anything else is a Go `time.ParseDuration` string (`30s`, `5m`, `1h30m`,
`250ms`). Which window a moment falls in follows Go's two rules:

- `calendar_aligned: true` on a `d`/`w`/`M`/`Y` duration snaps to UTC calendar boundaries
  (`GetCalendarPeriodStart`): midnight, Monday 00:00, the 1st of the month, January 1st. N > 1 groups N
  units into one period counted from a fixed epoch (1970-01-01 for days, Monday 1970-01-05 for weeks,
  year 0 month 0 for months and years), so "3M" is calendar quarters and every process agrees.
  Calendar periods are not fixed-width (months have 28-31 days), so the start is computed here and the
  end is the next boundary.
- Otherwise (and for sub-day durations, which Go says are not alignable) the window is rolling: fixed
  width, on the lattice `anchor + k x duration` (`RollingWindowStart`), where the anchor is a persisted,
  immutable instant (Go: the budget row's creation time; here: the first time this gateway's shared
  state saw the limit, see ledger.py), so all workers and instances agree on the boundaries.

Everything takes `now` as epoch seconds, so tests drive it with an injectable clock.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
_DAY = 86400.0
_LONG_UNITS = {"d": _DAY, "w": 7 * _DAY, "M": 30 * _DAY, "Y": 365 * _DAY}  # Go's approximations
_EPOCH_MONDAY = 4 * _DAY  # 1970-01-05 00:00 UTC was a Monday


def go_duration(text: str) -> float:
    """Seconds of a Go `time.ParseDuration` string (`1h30m`, `250ms`, `45s`). ValueError if not one."""
    if not isinstance(text, str) or not text:
        raise ValueError("a duration must be a non-empty string like '30s', '5m', '1h', '1d', '1w', '1M' or '1Y'")
    body = text[1:] if text[0] in "+-" else text
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _GO_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}: use e.g. '30s', '5m', '1h', '1d', '1w', '1M' or '1Y'")
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return -total if text[0] == "-" else total


def parse_duration(text: str) -> float:
    """Seconds of a Go Bifrost reset duration (`30s`, `5m`, `1h`, `1d`, `1w`, `1M`, `1Y`), as Go computes it."""
    if isinstance(text, str) and text and text[-1] in _LONG_UNITS:
        # Go parses the number as hours (`time.ParseDuration(n + "h")`), then scales: "1.5d" is 36 h.
        hours = go_duration(text[:-1] + "h")
        return hours / 3600.0 * _LONG_UNITS[text[-1]]
    return go_duration(text)


@dataclass(frozen=True, slots=True)
class Period:
    """A parsed reset period. `calendar` is true only when calendar alignment applies (see module doc)."""

    text: str
    seconds: float
    calendar: bool
    unit: str  # "d" | "w" | "M" | "Y" for calendar periods, "" otherwise
    n: int  # units per calendar period

    def window(self, now: float, anchor: float = 0.0) -> tuple[float, float]:
        """(start, end) in epoch seconds of the period holding `now`. `anchor` places rolling windows."""
        if self.calendar:
            start = _calendar_start(self.unit, self.n, now)
            return start, _calendar_add(self.unit, self.n, start)
        if now < anchor:  # clock skew or a rollback: clamp to the anchor, as Go does
            return anchor, anchor + self.seconds
        k = (now - anchor) // self.seconds
        start = anchor + k * self.seconds
        return start, start + self.seconds


def period(text: str, calendar_aligned: bool = False) -> Period:
    """Parse `text`; ValueError (naming the accepted forms) when it is not a positive duration."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"a reset duration must be positive, got {text!r}")
    unit = text[-1]
    if calendar_aligned and unit in _LONG_UNITS:
        try:
            n = int(text[:-1])
        except ValueError:
            n = 1  # Go: a multiplier that is not a whole number aligns to single units
        return Period(text, seconds, True, unit, max(n, 1))
    return Period(text, seconds, False, "", 1)


def _calendar_start(unit: str, n: int, now: float) -> float:
    t = datetime.fromtimestamp(now, UTC)
    if unit == "d":
        days = int(now // _DAY)
        return float((days - days % n) * _DAY)
    if unit == "w":
        weeks = int((now - _EPOCH_MONDAY) // (7 * _DAY))
        return _EPOCH_MONDAY + (weeks - weeks % n) * 7 * _DAY
    if unit == "M":
        months = t.year * 12 + t.month - 1
        months -= months % n
        return float(calendar.timegm((months // 12, months % 12 + 1, 1, 0, 0, 0)))
    year = t.year - t.year % n
    return float(calendar.timegm((year, 1, 1, 0, 0, 0)))


def _calendar_add(unit: str, n: int, start: float) -> float:
    if unit == "d":
        return start + n * _DAY
    if unit == "w":
        return start + n * 7 * _DAY
    t = datetime.fromtimestamp(start, UTC)
    if unit == "M":
        months = t.year * 12 + t.month - 1 + n
        return float(calendar.timegm((months // 12, months % 12 + 1, 1, 0, 0, 0)))
    return float(calendar.timegm((t.year + n, 1, 1, 0, 0, 0)))


def format_reset(seconds: float) -> str:
    """OpenAI's `x-ratelimit-reset-*` form: `120ms`, `45s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    s = int(-(-seconds // 1))  # whole seconds, rounded up: never tell a client to come back too early
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"
