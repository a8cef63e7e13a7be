"""Five-field cron expressions evaluated on local wall-clock time in an IANA zone, with exact DST rules.

Pure standard library (``zoneinfo``); no Django. The scheduler tick uses it to compute ``next_run_at``,
the admin to show the next run times.

Syntax
------
``minute hour day-of-month month day-of-week``: ``*``, numbers, ranges ``a-b``, steps ``*/n`` and
``a-b/n``, lists ``a,b,c``; month names ``JAN``-``DEC`` and day names ``SUN``-``SAT`` (any case);
day-of-week ``0``-``7`` with both ``0`` and ``7`` meaning Sunday. The macros ``@yearly`` (``@annually``),
``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly`` stand for ``0 0 1 1 *``,
``0 0 1 * *``, ``0 0 * * 0``, ``0 0 * * *`` and ``0 * * * *``. Everything else is a ``CronError``
naming the field: six fields, ``@reboot``, ``L``, ``W``, ``#``, ``?``, a step without a range (``5/15``),
reversed ranges, step 0, out-of-range values, and expressions that can never fire (``0 0 31 2 *``).

Day-of-month and day-of-week follow Vixie cron (``find_jobs`` in cronie ``src/cron.c``): when both are
restricted, a day matches if *either* matches; otherwise both must. As in Vixie cron (``entry.c`` sets
``DOM_STAR``/``DOW_STAR`` from the field's first character), a field counts as unrestricted when its text
starts with ``*``, so ``0 0 */2 * MON`` means "odd days that are Mondays", not "odd days or Mondays".

DST rule
--------
An expression is matched against the readings of the local wall clock in the schedule's zone. When the
UTC offset changes, some readings never happen (spring-forward gap) and some happen twice (fall-back
overlap). The rule depends on the hour field:

1. Fixed-time jobs -- the hour field does not cover all 24 hours (``30 2 * * *``, ``0 */6 * * *``,
   ``*/15 9-17 * * 1-5``, ``@daily``). Every matching local time fires exactly once, at the first instant
   the local clock reaches or passes it:
   a. a time the clock shows once fires then;
   b. a time repeated by a fall-back fires at its first occurrence (``fold=0``) only;
   c. a time skipped by a spring-forward fires at the instant the clock jumps over it, the first instant
      after the gap (02:30 on New York's March change day fires at 03:00 EDT = 07:00 UTC); matching times
      in the same gap coalesce into that one fire.
2. Every-hour jobs -- the hour field covers all 24 hours (``*/15 * * * *``, ``30 * * * *``,
   ``@hourly``). They fire at every instant the local clock shows a matching minute:
   a. a repeated reading fires at both occurrences (``fold=0`` and ``fold=1``);
   b. a skipped reading does not fire.

Why: a fixed-time job is an appointment on the calendar ("the 02:30 export"). Its day must not be lost
(cronie #218 skips a matching day across spring-forward) nor run twice (celery #1604 ran a task at both
11:00 and 12:00 on the change day), and it must never be reported at a local time that does not exist
(apscheduler #1059); so each local date-time gets exactly one run, as early as the clock allows. An
every-hour job is a cadence in elapsed time: "every 15 minutes" should stay every 15 real minutes, so the
repeated hour, which really elapses, gets its runs, and the skipped hour, which does not, gets none.
Fires are instants, so a gap fire that lands on a matching minute is one fire: on New York's March change
day ``0 2,3 * * *`` fires once, at 03:00 EDT, for both 02:00 and 03:00.

This follows cronie, whose cron(8) says DST changes are "handled in a special way. This only applies to
jobs that run at a specific time and jobs that run with a granularity greater than one hour. Jobs that
run more frequently are scheduled normally. If time was adjusted one hour forward, those jobs that would
have run in the interval that has been skipped will be run immediately. Conversely, if time was adjusted
backward, running the same job twice is avoided." It differs in three deliberate ways:

- cronie decides by spelling: a job is "wildcard" when its minute *or* hour field starts with ``*``
  (``MIN_STAR|HR_STAR`` in ``entry.c``/``find_jobs``). Here only the expanded hour set decides, so
  ``0 0-23 * * *`` behaves like ``0 * * * *``; ``0 */6 * * *`` is fixed-time; and ``*/15 2 * * *`` is
  fixed-time -- cronie runs it not at all on a day whose 02:xx is skipped and twice when 02:xx repeats.
- cronie runs a fixed-time job once per skipped matching minute; here they coalesce into one run.
- cronie only treats offset changes under three hours this way; here the rule applies to every change
  ``zoneinfo`` reports.

Like PEP 495, the model assumes no reading is skipped or repeated by more than one transition; the
every-hour rule also assumes a zone's offset changes at most once within any 24 hours (it looks that far
ahead for a fall-back). Both hold for the zones in current tzdata, including 30-minute (Lord_Howe),
2-hour (Troll), midnight (Havana, Santiago) and whole-day (Apia, 2011) changes.
"""

from __future__ import annotations

import re
import zoneinfo
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, date, datetime, timedelta
from functools import lru_cache

__all__ = [
    "CronError",
    "CronSpec",
    "due_times_between",
    "next_run_after",
    "next_runs",
    "parse_cron",
    "validate_timezone",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
# How far ahead an every-hour job looks for a fall-back that will replay readings already shown.
_REPLAY_PROBE = timedelta(days=1)
# A parsed expression always fires within a few decades (Feb 29 on a given weekday); this only guards
# against looping forever on a bug.
_SEARCH_YEARS = 400
_MAX_EXPRESSION_LENGTH = 1000
_ALL_HOURS = frozenset(range(24))
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NON_STANDARD = re.compile(r"^(?:\?|LW?|\d+[LW]|[A-Z]{3}L|.*#.*)$")
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*$")


class CronError(ValueError):
    """An invalid cron expression or time zone; the message is one line naming the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day-of-week", 0, 7, _DAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronSpec:
    """A parsed expression: the expanded value set of each field (day-of-week 0-6, Sunday = 0).

    ``day_of_month_star``/``day_of_week_star`` record whether the field's text starts with ``*``, which
    selects the Vixie day rule (see the module docstring)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    day_of_month_star: bool
    day_of_week_star: bool
    _sorted_minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _sorted_hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _sorted_months: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sorted_minutes", tuple(sorted(self.minutes)))
        object.__setattr__(self, "_sorted_hours", tuple(sorted(self.hours)))
        object.__setattr__(self, "_sorted_months", tuple(sorted(self.months)))

    @property
    def every_hour(self) -> bool:
        """True when the hour field covers all 24 hours: the DST rule for every-hour jobs applies."""
        return self.hours == _ALL_HOURS

    def _day_matches(self, day: int, weekday: int) -> bool:
        in_month = day in self.days_of_month
        in_week = weekday in self.days_of_week
        if self.day_of_month_star or self.day_of_week_star:
            return in_month and in_week
        return in_month or in_week


def parse_cron(expression: str) -> CronSpec:
    """Parse a five-field expression or macro; ``CronError`` with a one-line message if it is invalid."""
    if len(expression) > _MAX_EXPRESSION_LENGTH:
        raise CronError(f"expression: longer than {_MAX_EXPRESSION_LENGTH} characters")
    parts = expression.split()
    if len(parts) == 1 and parts[0].startswith("@"):
        macro = parts[0].lower()
        if macro not in _MACROS:
            raise CronError(f"expression: unknown macro {_show(parts[0])} (supported: {', '.join(_MACROS)})")
        return _build(macro, _MACROS[macro].split())
    if len(parts) != 5:
        raise CronError(
            f"expression: expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    return _build(" ".join(parts), parts)


def validate_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The ``ZoneInfo`` for an IANA zone name such as ``Europe/Berlin``; ``CronError`` if it is unknown."""
    if not _ZONE_NAME.match(name) or name not in _iana_zone_names():
        raise CronError(f"timezone: {_show(name)} is not a known IANA time zone")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"timezone: {_show(name)} is not a known IANA time zone") from exc


def next_run_after(spec: CronSpec, tz: zoneinfo.ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware, any zone), as an aware UTC datetime.

    The expression is matched on local wall-clock time in ``tz`` with the module's DST rule. Cost is a
    few field jumps (at worst a day-by-day scan of each candidate month) and a few ``zoneinfo``
    conversions, not a walk over the minutes in between; ``CronError`` past year 9999."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")
    after_utc = after.astimezone(UTC)
    try:
        if spec.every_hour:
            return _next_every_hour(spec, tz, after_utc)
        return _next_fixed_time(spec, tz, after_utc)
    except OverflowError as exc:
        raise CronError(
            f"expression: {spec.expression!r} has no fire time before year {MAXYEAR + 1}"
        ) from exc


def next_runs(spec: CronSpec, tz: zoneinfo.ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``, in order, as aware UTC datetimes."""
    runs: list[datetime] = []
    current = after
    for _ in range(count):
        current = next_run_after(spec, tz, current)
        runs.append(current)
    return runs


def due_times_between(
    spec: CronSpec, tz: zoneinfo.ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Every fire time in ``(start, end]``, in order, as aware UTC datetimes.

    Cost is proportional to the number of fire times returned."""
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be a timezone-aware datetime")
    due: list[datetime] = []
    current = next_run_after(spec, tz, start)
    while current <= end:
        due.append(current)
        current = next_run_after(spec, tz, current)
    return due


# --- parsing -------------------------------------------------------------------------------------------


def _build(expression: str, parts: list[str]) -> CronSpec:
    minutes, hours, days_of_month, months, days_of_week = (
        _parse_field(spec_field, text) for spec_field, text in zip(_FIELDS, parts, strict=True)
    )
    spec = CronSpec(
        expression=expression,
        minutes=minutes,
        hours=hours,
        days_of_month=days_of_month,
        months=months,
        days_of_week=frozenset(0 if value == 7 else value for value in days_of_week),
        day_of_month_star=parts[2].startswith("*"),
        day_of_week_star=parts[4].startswith("*"),
    )
    and_rule = spec.day_of_month_star or spec.day_of_week_star
    if and_rule and not any(day <= _LONGEST_MONTH[month - 1] for month in months for day in days_of_month):
        days = ",".join(str(day) for day in sorted(days_of_month))
        month_names = ",".join(_MONTH_NAMES[month - 1] for month in sorted(months))
        subject = f"day {days} does" if len(days_of_month) == 1 else f"days {days} do"
        raise CronError(
            f"day-of-month: {subject} not exist in {month_names}, so the expression can never fire"
        )
    return spec


def _parse_field(spec_field: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for element in text.split(","):
        if not element:
            raise CronError(f"{spec_field.name}: empty element in list {_show(text)}")
        base, slash, step_text = element.partition("/")
        step = 1
        if slash:
            if not step_text:
                raise CronError(f"{spec_field.name}: missing step after '/' in {_show(element)}")
            if not _is_number(step_text):
                raise CronError(f"{spec_field.name}: step {_show(step_text)} is not a number")
            step = int(step_text)
            largest_step = spec_field.high - spec_field.low
            if not 1 <= step <= largest_step:
                raise CronError(f"{spec_field.name}: step {step} is out of range 1-{largest_step}")
        if base == "*":
            low, high = spec_field.low, spec_field.high
        elif "-" in base or "*" in base:
            first, _, last = base.partition("-")
            if not first or not last or "-" in last or "*" in base:
                raise CronError(f"{spec_field.name}: {_show(base)} is not a valid range")
            low, high = _parse_value(spec_field, first), _parse_value(spec_field, last)
            if low > high:
                raise CronError(f"{spec_field.name}: range {base} is reversed")
        elif slash:
            raise CronError(
                f"{spec_field.name}: step in {_show(element)} needs a range or '*'"
                f" (as in {base}-{spec_field.high}/{step_text})"
            )
        else:
            low = high = _parse_value(spec_field, base)
        values.update(range(low, high + 1, step))
    return frozenset(values)


def _parse_value(spec_field: _Field, token: str) -> int:
    if _is_number(token):
        value = int(token)
        if not spec_field.low <= value <= spec_field.high:
            raise CronError(f"{spec_field.name}: {value} is out of range {spec_field.low}-{spec_field.high}")
        return value
    upper = token.upper()
    if upper in spec_field.names:
        return spec_field.names.index(upper) + spec_field.names_start
    if _NON_STANDARD.match(upper):
        raise CronError(
            f"{spec_field.name}: {_show(token)} is not supported (L, W, # and ? are non-standard extensions)"
        )
    if spec_field.names:
        kind = "month name (JAN-DEC)" if spec_field.names is _MONTH_NAMES else "day name (SUN-SAT)"
        raise CronError(f"{spec_field.name}: {_show(token)} is not a number or a {kind}")
    raise CronError(f"{spec_field.name}: {_show(token)} is not a number")


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


@lru_cache(maxsize=1)
def _iana_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# --- next fire time ------------------------------------------------------------------------------------


def _next_fixed_time(spec: CronSpec, tz: zoneinfo.ZoneInfo, after_utc: datetime) -> datetime:
    # The instant a fixed-time reading fires (the first instant the clock reaches it) grows with the
    # reading, so the answer is the first matching reading whose fire instant is after `after`. Unless
    # `after` is inside a replayed stretch, that is the first matching reading past the current one;
    # inside one, the matching readings up to the end of the replay fired before `after` and are skipped.
    candidate = _floor_minute(after_utc.astimezone(tz).replace(tzinfo=None)) + _MINUTE
    while True:
        reading = _next_reading(spec, candidate)
        first, second = _occurrences(reading, tz)
        fire = first if first <= second else _jump_over(reading, tz, second, first)
        if fire > after_utc:
            return fire
        candidate = reading + _MINUTE


def _next_every_hour(spec: CronSpec, tz: zoneinfo.ZoneInfo, after_utc: datetime) -> datetime:
    # Fires are the first occurrences of matching readings, which grow with the reading, plus the second
    # occurrences of repeated ones. A second occurrence can only win when its first occurrence is not
    # after `after`, i.e. when `after` is inside the repeated stretch or just before the fall-back.
    local = after_utc.astimezone(tz)
    reading_now = local.replace(tzinfo=None)
    candidate = _floor_minute(reading_now) + _MINUTE
    while True:
        reading = _next_reading(spec, candidate)
        first, second = _occurrences(reading, tz)
        if first <= second:  # the reading exists
            if first > after_utc:
                next_first = first
                break
            if second > after_utc:
                # `after` is in the replay: this replayed reading comes before any reading not yet shown.
                return second
        candidate = reading + _MINUTE
    offset_now = local.utcoffset()
    probe = after_utc + _REPLAY_PROBE
    offset_later = probe.astimezone(tz).utcoffset()
    if local.fold == 0 and offset_now is not None and offset_later is not None and offset_later < offset_now:
        # The clock goes back within the probe window; readings from the start of the replay up to the
        # current one fire again after it.
        turn = _offset_change(tz, after_utc, probe)
        replay = _next_reading(spec, _ceil_minute(turn.astimezone(tz).replace(tzinfo=None)))
        if replay <= reading_now:
            replayed = replay.replace(tzinfo=tz, fold=1).astimezone(UTC)
            if after_utc < replayed < next_first:
                return replayed
    return next_first


def _occurrences(reading: datetime, tz: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants for a naive local reading with fold=0 and fold=1 (PEP 495).

    Equal: the reading happens once. first < second: it repeats (fall-back). first > second: it is
    skipped (spring-forward); the jump happens between the two."""
    first = reading.replace(tzinfo=tz).astimezone(UTC)
    second = reading.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return first, second


def _jump_over(reading: datetime, tz: zoneinfo.ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant the clock jumps over a skipped ``reading``: the first instant showing a later reading.

    ``before`` shows an earlier reading, ``after`` a later one; tzdata transitions are whole seconds."""
    low, high = _seconds(before), _seconds(after)
    while high - low > 1:
        middle = (low + high) // 2
        if (_EPOCH + timedelta(seconds=middle)).astimezone(tz).replace(tzinfo=None) >= reading:
            high = middle
        else:
            low = middle
    return _EPOCH + timedelta(seconds=high)


def _offset_change(tz: zoneinfo.ZoneInfo, start: datetime, end: datetime) -> datetime:
    """The first instant in ``(start, end]`` whose UTC offset differs from ``start``'s; one change assumed."""
    offset = start.astimezone(tz).utcoffset()
    low, high = _seconds(start), _seconds(end) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if (_EPOCH + timedelta(seconds=middle)).astimezone(tz).utcoffset() != offset:
            high = middle
        else:
            low = middle
    return _EPOCH + timedelta(seconds=high)


def _next_reading(spec: CronSpec, start: datetime) -> datetime:
    """The first naive whole-minute reading at or after ``start`` that matches, jumping field by field."""
    year, month, day, hour, minute = start.year, start.month, start.day, start.hour, start.minute
    last_year = min(year + _SEARCH_YEARS, MAXYEAR)
    months, hours, minutes = spec._sorted_months, spec._sorted_hours, spec._sorted_minutes
    while True:
        if year > last_year:
            raise CronError(f"expression: {spec.expression!r} has no fire time before year {last_year + 1}")
        index = bisect_left(months, month)
        if index == len(months):
            year, month, day, hour, minute = year + 1, months[0], 1, 0, 0
            continue
        if months[index] != month:
            month, day, hour, minute = months[index], 1, 0, 0
        matching_day = _next_day(spec, year, month, day)
        if matching_day is None:
            year, month, day, hour, minute = (
                (year + 1, 1, 1, 0, 0) if month == 12 else (year, month + 1, 1, 0, 0)
            )
            continue
        if matching_day != day:
            day, hour, minute = matching_day, 0, 0
        index = bisect_left(hours, hour)
        if index == len(hours):
            day, hour, minute = day + 1, 0, 0
            continue
        if hours[index] != hour:
            hour, minute = hours[index], 0
        index = bisect_left(minutes, minute)
        if index == len(minutes):
            hour, minute = hour + 1, 0
            continue
        return datetime(year, month, day, hour, minutes[index])


def _next_day(spec: CronSpec, year: int, month: int, day: int) -> int | None:
    last = _days_in_month(year, month)
    if day > last:
        return None
    weekday = (date(year, month, day).weekday() + 1) % 7
    for candidate in range(day, last + 1):
        if spec._day_matches(candidate, weekday):
            return candidate
        weekday = (weekday + 1) % 7
    return None


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return _LONGEST_MONTH[month - 1]


def _floor_minute(reading: datetime) -> datetime:
    return reading.replace(second=0, microsecond=0)


def _ceil_minute(reading: datetime) -> datetime:
    floor = _floor_minute(reading)
    return floor if floor == reading else floor + _MINUTE


def _seconds(instant: datetime) -> int:
    return (instant - _EPOCH) // _SECOND
