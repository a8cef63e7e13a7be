from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipelines.cron import (
    CronError,
    CronSpec,
    due_times_between,
    next_run_after,
    next_runs,
    parse_cron,
    validate_timezone,
)

MINUTE = timedelta(minutes=1)
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SYDNEY = ZoneInfo("Australia/Sydney")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%MZ")


def local(instant: datetime, tz: ZoneInfo) -> str:
    """The wall-clock reading with its offset and fold, e.g. ``01:30-04:00 fold=0``."""
    reading = instant.astimezone(tz)
    return f"{reading.isoformat(timespec='minutes')[11:]} fold={reading.fold}"


# --- parser ---------------------------------------------------------------------------------------------

ALL_MINUTES = set(range(60))
ALL_HOURS = set(range(24))
ALL_DAYS = set(range(1, 32))
ALL_MONTHS = set(range(1, 13))
ALL_WEEKDAYS = set(range(7))


@pytest.mark.parametrize(
    ("expression", "minutes", "hours", "days_of_month", "months", "days_of_week", "stars"),
    [
        ("* * * * *", ALL_MINUTES, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("*/15 * * * *", {0, 15, 30, 45}, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("0 */6 * * *", {0}, {0, 6, 12, 18}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("30 2 * * *", {30}, {2}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("0 9 * * 1-5", {0}, {9}, ALL_DAYS, ALL_MONTHS, {1, 2, 3, 4, 5}, (True, False)),
        ("15 3 29 2 *", {15}, {3}, {29}, {2}, ALL_WEEKDAYS, (False, True)),
        ("0 0 1,15 * 1", {0}, {0}, {1, 15}, ALL_MONTHS, {1}, (False, False)),
        ("45 23 31 12 *", {45}, {23}, {31}, {12}, ALL_WEEKDAYS, (False, True)),
        (
            "5-20/5 1,2,3 1-31/10 */4 *",
            {5, 10, 15, 20},
            {1, 2, 3},
            {1, 11, 21, 31},
            {1, 5, 9},
            ALL_WEEKDAYS,
            (False, True),
        ),
        ("0 0 * JAN-MAR,dec sun,Sat", {0}, {0}, ALL_DAYS, {1, 2, 3, 12}, {0, 6}, (True, False)),
        ("0 0 * * 7", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0}, (True, False)),
        ("0 0 * * 0-7", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, False)),
        ("0 0 * * 5-7", {0}, {0}, ALL_DAYS, ALL_MONTHS, {5, 6, 0}, (True, False)),
        ("0 0 * * */2", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0, 2, 4, 6}, (True, True)),
        ("0 0 * * mon-FRI/2", {0}, {0}, ALL_DAYS, ALL_MONTHS, {1, 3, 5}, (True, False)),
        ("0 0 */2 * MON", {0}, {0}, set(range(1, 32, 2)), ALL_MONTHS, {1}, (True, False)),
        ("07 08 * * *", {7}, {8}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("0 0 31 2 1", {0}, {0}, {31}, {2}, {1}, (False, False)),
        ("0 0 30 1,2 *", {0}, {0}, {30}, {1, 2}, ALL_WEEKDAYS, (False, True)),
        ("@hourly", {0}, ALL_HOURS, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("@daily", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("@midnight", {0}, {0}, ALL_DAYS, ALL_MONTHS, ALL_WEEKDAYS, (True, True)),
        ("@weekly", {0}, {0}, ALL_DAYS, ALL_MONTHS, {0}, (True, False)),
        ("@monthly", {0}, {0}, {1}, ALL_MONTHS, ALL_WEEKDAYS, (False, True)),
        ("@Yearly", {0}, {0}, {1}, {1}, ALL_WEEKDAYS, (False, True)),
        ("@annually", {0}, {0}, {1}, {1}, ALL_WEEKDAYS, (False, True)),
    ],
)
def test_valid_expression_expands_to_field_sets(
    expression: str,
    minutes: set[int],
    hours: set[int],
    days_of_month: set[int],
    months: set[int],
    days_of_week: set[int],
    stars: tuple[bool, bool],
) -> None:
    spec = parse_cron(expression)

    assert spec.minutes == minutes
    assert spec.hours == hours
    assert spec.days_of_month == days_of_month
    assert spec.months == months
    assert spec.days_of_week == days_of_week
    assert (spec.day_of_month_star, spec.day_of_week_star) == stars


def test_whitespace_is_normalised_in_the_stored_expression() -> None:
    assert parse_cron("  0\t0   * * *  ").expression == "0 0 * * *"
    assert parse_cron("@DAILY").expression == "@daily"


@pytest.mark.parametrize(
    ("expression", "every_hour"),
    [
        ("*/15 * * * *", True),
        ("30 * * * *", True),
        ("0 0-23 * * *", True),
        ("0 */1 * * *", True),
        ("@hourly", True),
        ("0 */6 * * *", False),
        ("*/15 2 * * *", False),
        ("0 0-22 * * *", False),
        ("@daily", False),
    ],
)
def test_every_hour_classification_uses_the_expanded_hour_set(expression: str, every_hour: bool) -> None:
    assert parse_cron(expression).every_hour is every_hour


NOT_STANDARD = "is not supported (L, W, # and ? are non-standard extensions)"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expression: expected 5 fields (minute hour day-of-month month day-of-week), got 0"),
        ("* * * *", "expression: expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 * * * *", "expression: expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("@daily *", "expression: expected 5 fields (minute hour day-of-month month day-of-week), got 2"),
        (
            "@reboot",
            "expression: unknown macro '@reboot' "
            "(supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
        ),
        ("0 " * 600, "expression: longer than 1000 characters"),
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month: 32 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * 0 *", "month: 0 is out of range 1-12"),
        ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
        ("0-60 * * * *", "minute: 60 is out of range 0-59"),
        ("1,,2 * * * *", "minute: empty element in list '1,,2'"),
        ("1, * * * *", "minute: empty element in list '1,'"),
        ("* * * ,1 *", "month: empty element in list ',1'"),
        ("*/0 * * * *", "minute: step 0 is out of range 1-59"),
        ("*/60 * * * *", "minute: step 60 is out of range 1-59"),
        ("* */24 * * *", "hour: step 24 is out of range 1-23"),
        ("* 0-23/0 * * *", "hour: step 0 is out of range 1-23"),
        ("*/ * * * *", "minute: missing step after '/' in '*/'"),
        ("*/x * * * *", "minute: step 'x' is not a number"),
        ("0 0 * * */MON", "day-of-week: step 'MON' is not a number"),
        ("5/15 * * * *", "minute: step in '5/15' needs a range or '*' (as in 5-59/15)"),
        ("30-10 * * * *", "minute: range 30-10 is reversed"),
        ("0 0 * * FRI-MON", "day-of-week: range FRI-MON is reversed"),
        ("0 0 * * 7-1", "day-of-week: range 7-1 is reversed"),
        ("0 0 * DEC-JAN *", "month: range DEC-JAN is reversed"),
        ("-1 * * * *", "minute: '-1' is not a valid range"),
        ("1-2-3 * * * *", "minute: '1-2-3' is not a valid range"),
        ("*-5 * * * *", "minute: '*-5' is not a valid range"),
        ("0 0 * * 1-", "day-of-week: '1-' is not a valid range"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("MON * * * *", "minute: 'MON' is not a number"),
        ("\u0663 * * * *", "minute: '\u0663' is not a number"),
        ("0 0 * JANUARY *", "month: 'JANUARY' is not a number or a month name (JAN-DEC)"),
        ("0 0 * * MONDAY", "day-of-week: 'MONDAY' is not a number or a day name (SUN-SAT)"),
        ("0 0 * * JAN", "day-of-week: 'JAN' is not a number or a day name (SUN-SAT)"),
        ("0 0 L * *", f"day-of-month: 'L' {NOT_STANDARD}"),
        ("0 0 LW * *", f"day-of-month: 'LW' {NOT_STANDARD}"),
        ("0 0 15W * *", f"day-of-month: '15W' {NOT_STANDARD}"),
        ("0 0 L-3 * *", f"day-of-month: 'L' {NOT_STANDARD}"),
        ("0 0 * * 5L", f"day-of-week: '5L' {NOT_STANDARD}"),
        ("0 0 * * 5#3", f"day-of-week: '5#3' {NOT_STANDARD}"),
        ("0 0 * * MON#2", f"day-of-week: 'MON#2' {NOT_STANDARD}"),
        ("0 0 ? * *", f"day-of-month: '?' {NOT_STANDARD}"),
        ("0 0 * * ?", f"day-of-week: '?' {NOT_STANDARD}"),
        ("0 0 31 2 *", "day-of-month: day 31 does not exist in FEB, so the expression can never fire"),
        ("0 0 30,31 2 *", "day-of-month: days 30,31 do not exist in FEB, so the expression can never fire"),
        (
            "0 0 31 4,6,9,11 *",
            "day-of-month: day 31 does not exist in APR,JUN,SEP,NOV, so the expression can never fire",
        ),
        ("0 0 30 FEB */2", "day-of-month: day 30 does not exist in FEB, so the expression can never fire"),
    ],
)
def test_invalid_expression_is_rejected_with_a_one_line_message(expression: str, message: str) -> None:
    with pytest.raises(CronError) as excinfo:
        parse_cron(expression)

    assert str(excinfo.value) == message
    assert "\n" not in message


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


@pytest.mark.parametrize("name", ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "UTC"])
def test_validate_timezone_returns_the_zone(name: str) -> None:
    assert validate_timezone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "america/new_york", "America/New York", "../../etc/passwd", "/etc/localtime"]
)
def test_validate_timezone_rejects_unknown_names(name: str) -> None:
    with pytest.raises(CronError) as excinfo:
        validate_timezone(name)

    assert str(excinfo.value) == f"timezone: {name!r} is not a known IANA time zone"


# --- DST: hand-checked cases ------------------------------------------------------------------------------


def test_spring_forward_skipped_time_fires_at_the_end_of_the_gap() -> None:
    spec = parse_cron("30 2 * * *")

    runs = next_runs(spec, NEW_YORK, utc(2025, 3, 8, 12), 3)

    assert [iso(run) for run in runs] == ["2025-03-09T07:00Z", "2025-03-10T06:30Z", "2025-03-11T06:30Z"]
    assert local(runs[0], NEW_YORK) == "03:00-04:00 fold=0"


def test_matching_times_in_the_same_gap_coalesce_into_one_fire() -> None:
    runs = next_runs(parse_cron("0,30 2 * * *"), NEW_YORK, utc(2025, 3, 8, 12), 3)
    berlin = due_times_between(parse_cron("*/20 2 * * *"), BERLIN, utc(2025, 3, 29, 12), utc(2025, 3, 31, 12))

    assert [iso(run) for run in runs] == ["2025-03-09T07:00Z", "2025-03-10T06:00Z", "2025-03-10T06:30Z"]
    assert [iso(run) for run in berlin] == [
        "2025-03-30T01:00Z",
        "2025-03-31T00:00Z",
        "2025-03-31T00:20Z",
        "2025-03-31T00:40Z",
    ]


def test_gap_fire_and_a_fire_at_the_end_of_the_gap_are_one_fire() -> None:
    runs = next_runs(parse_cron("0 2,3 * * *"), NEW_YORK, utc(2025, 3, 9), 3)

    assert [iso(run) for run in runs] == ["2025-03-09T07:00Z", "2025-03-10T06:00Z", "2025-03-10T07:00Z"]


def test_fall_back_fixed_time_fires_once_at_the_first_occurrence() -> None:
    spec = parse_cron("30 1 * * *")

    runs = next_runs(spec, NEW_YORK, utc(2025, 11, 1, 12), 2)
    on_the_day = due_times_between(spec, NEW_YORK, utc(2025, 11, 2, 4), utc(2025, 11, 2, 12))

    assert [iso(run) for run in runs] == ["2025-11-02T05:30Z", "2025-11-03T06:30Z"]
    assert [iso(run) for run in on_the_day] == ["2025-11-02T05:30Z"]
    assert local(runs[0], NEW_YORK) == "01:30-04:00 fold=0"


def test_fixed_time_asked_from_inside_the_repeated_hour_waits_for_the_next_day() -> None:
    second_pass = datetime(2025, 11, 2, 1, 10, tzinfo=NEW_YORK, fold=1)

    run = next_run_after(parse_cron("30 1 * * *"), NEW_YORK, second_pass)

    assert iso(run) == "2025-11-03T06:30Z"


def test_fall_back_every_hour_job_fires_in_both_occurrences() -> None:
    runs = next_runs(parse_cron("*/30 * * * *"), NEW_YORK, utc(2025, 11, 2, 4, 45), 5)

    assert [iso(run) for run in runs] == [
        "2025-11-02T05:00Z",
        "2025-11-02T05:30Z",
        "2025-11-02T06:00Z",
        "2025-11-02T06:30Z",
        "2025-11-02T07:00Z",
    ]
    assert [local(run, NEW_YORK) for run in runs] == [
        "01:00-04:00 fold=0",
        "01:30-04:00 fold=0",
        "01:00-05:00 fold=1",
        "01:30-05:00 fold=1",
        "02:00-05:00 fold=0",
    ]


def test_every_hour_job_asked_from_the_first_pass_gets_the_replay_before_later_readings() -> None:
    first_pass = datetime(2025, 11, 2, 1, 40, tzinfo=NEW_YORK)

    run = next_run_after(parse_cron("30 * * * *"), NEW_YORK, first_pass)

    assert iso(run) == "2025-11-02T06:30Z"
    assert local(run, NEW_YORK) == "01:30-05:00 fold=1"


def test_spring_forward_every_hour_job_skips_readings_that_do_not_exist() -> None:
    runs = next_runs(parse_cron("30 * * * *"), NEW_YORK, utc(2025, 3, 9, 6), 3)

    assert [iso(run) for run in runs] == ["2025-03-09T06:30Z", "2025-03-09T07:30Z", "2025-03-09T08:30Z"]
    assert [local(run, NEW_YORK) for run in runs] == [
        "01:30-05:00 fold=0",
        "03:30-04:00 fold=0",
        "04:30-04:00 fold=0",
    ]


def test_sydney_april_fall_back() -> None:
    fixed = next_runs(parse_cron("30 2 * * *"), SYDNEY, utc(2025, 4, 5, 12), 2)
    every_hour = next_runs(parse_cron("*/30 * * * *"), SYDNEY, utc(2025, 4, 5, 15, 15), 5)

    assert [iso(run) for run in fixed] == ["2025-04-05T15:30Z", "2025-04-06T16:30Z"]
    assert local(fixed[0], SYDNEY) == "02:30+11:00 fold=0"
    assert [local(run, SYDNEY) for run in every_hour] == [
        "02:30+11:00 fold=0",
        "02:00+10:00 fold=1",
        "02:30+10:00 fold=1",
        "03:00+10:00 fold=0",
        "03:30+10:00 fold=0",
    ]


def test_sydney_october_spring_forward() -> None:
    fixed = next_runs(parse_cron("30 2 * * *"), SYDNEY, utc(2025, 10, 4, 12), 2)
    every_hour = next_runs(parse_cron("*/30 * * * *"), SYDNEY, utc(2025, 10, 4, 15), 3)

    assert [iso(run) for run in fixed] == ["2025-10-04T16:00Z", "2025-10-05T15:30Z"]
    assert local(fixed[0], SYDNEY) == "03:00+11:00 fold=0"
    assert [local(run, SYDNEY) for run in every_hour] == [
        "01:30+10:00 fold=0",
        "03:00+11:00 fold=0",
        "03:30+11:00 fold=0",
    ]


def test_lord_howe_half_hour_changes() -> None:
    spring = next_runs(parse_cron("0,15 2 * * *"), LORD_HOWE, utc(2025, 10, 4, 12), 2)
    autumn = due_times_between(parse_cron("30 1 * * *"), LORD_HOWE, utc(2025, 4, 5, 12), utc(2025, 4, 6, 12))

    assert [iso(run) for run in spring] == ["2025-10-04T15:30Z", "2025-10-05T15:00Z"]
    assert local(spring[0], LORD_HOWE) == "02:30+11:00 fold=0"
    assert [local(run, LORD_HOWE) for run in autumn] == ["01:30+11:00 fold=0"]


def test_berlin_fixed_hour_with_minute_steps_fires_in_the_first_pass_only() -> None:
    runs = due_times_between(parse_cron("*/15 2 * * *"), BERLIN, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12))

    assert [local(run, BERLIN) for run in runs] == [
        "02:00+02:00 fold=0",
        "02:15+02:00 fold=0",
        "02:30+02:00 fold=0",
        "02:45+02:00 fold=0",
    ]


def test_half_hour_offset_without_dst() -> None:
    runs = next_runs(parse_cron("0 9 * * 1-5"), KOLKATA, utc(2025, 6, 6, 4), 2)

    assert [iso(run) for run in runs] == ["2025-06-09T03:30Z", "2025-06-10T03:30Z"]


# --- next_run_after contract --------------------------------------------------------------------------------


def test_next_run_is_strictly_after_the_given_instant() -> None:
    spec = parse_cron("0 9 * * *")
    fire = utc(2025, 6, 2, 7)

    assert next_run_after(spec, BERLIN, fire - timedelta(microseconds=1)) == fire
    assert next_run_after(spec, BERLIN, fire) == utc(2025, 6, 3, 7)
    assert next_run_after(parse_cron("* * * * *"), BERLIN, fire + timedelta(seconds=59)) == fire + MINUTE


def test_after_may_be_in_any_zone_and_the_result_is_utc() -> None:
    spec = parse_cron("0 9 * * *")
    in_tokyo = datetime(2025, 6, 2, 16, 30, tzinfo=ZoneInfo("Asia/Tokyo"))

    run = next_run_after(spec, BERLIN, in_tokyo)

    assert run == next_run_after(spec, BERLIN, in_tokyo.astimezone(UTC)) == utc(2025, 6, 3, 7)
    assert run.tzinfo is UTC


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run_after(parse_cron("* * * * *"), BERLIN, datetime(2025, 1, 1))


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    runs = next_runs(parse_cron("0 0 1,15 * 1"), ZoneInfo("UTC"), utc(2025, 9, 1), 6)

    assert [run.date() for run in runs] == [
        date(2025, 9, 8),
        date(2025, 9, 15),
        date(2025, 9, 22),
        date(2025, 9, 29),
        date(2025, 10, 1),
        date(2025, 10, 6),
    ]


def test_day_of_month_step_starting_with_star_combines_with_and() -> None:
    runs = next_runs(parse_cron("0 0 */2 * MON"), ZoneInfo("UTC"), utc(2025, 8, 31), 5)

    assert [run.date() for run in runs] == [
        date(2025, 9, 1),
        date(2025, 9, 15),
        date(2025, 9, 29),
        date(2025, 10, 13),
        date(2025, 10, 27),
    ]


def test_rare_dates_resolve_by_jumping_fields() -> None:
    leap_day = next_runs(parse_cron("15 3 29 2 *"), BERLIN, utc(2025, 1, 1), 2)
    leap_sunday = next_runs(parse_cron("0 0 29 2 */7"), ZoneInfo("UTC"), utc(2025, 1, 1), 2)

    assert [iso(run) for run in leap_day] == ["2028-02-29T02:15Z", "2032-02-29T02:15Z"]
    assert [iso(run) for run in leap_sunday] == ["2032-02-29T00:00Z", "2060-02-29T00:00Z"]


def test_no_fire_time_before_the_end_of_the_calendar_is_a_cron_error() -> None:
    with pytest.raises(CronError) as excinfo:
        next_run_after(parse_cron("0 0 * * *"), ZoneInfo("UTC"), datetime(9999, 12, 31, 12, tzinfo=UTC))

    assert str(excinfo.value) == "expression: '0 0 * * *' has no fire time before year 10000"


def test_next_runs_and_due_times_between_bounds() -> None:
    spec = parse_cron("0 * * * *")
    start, end = utc(2025, 1, 1), utc(2025, 1, 1, 3)

    assert due_times_between(spec, ZoneInfo("UTC"), start, end) == [
        utc(2025, 1, 1, 1),
        utc(2025, 1, 1, 2),
        utc(2025, 1, 1, 3),
    ]
    assert due_times_between(spec, ZoneInfo("UTC"), start, start) == []
    assert next_runs(spec, ZoneInfo("UTC"), start, 0) == []
    assert [run.hour for run in next_runs(spec, ZoneInfo("UTC"), start, 5)] == [1, 2, 3, 4, 5]


def test_ten_thousand_mixed_schedules_resolve() -> None:
    expressions = [
        "*/5 * * * *",
        "30 2 * * *",
        "0 9 * * 1-5",
        "15 3 29 2 *",
        "0 0 1 1 *",
        "45 23 31 12 *",
        "0 */6 * * *",
        "0 0 1,15 * 1",
        "*/10 1-3 * * *",
        "@weekly",
    ]
    zones = [NEW_YORK, BERLIN, SYDNEY, LORD_HOWE, KOLKATA, ZoneInfo("UTC")]
    generator = random.Random(5)
    now = utc(2025, 11, 2, 5, 45)
    schedules = [(parse_cron(generator.choice(expressions)), generator.choice(zones)) for _ in range(10_000)]

    runs = [next_run_after(spec, tz, now) for spec, tz in schedules]

    assert len(runs) == 10_000
    assert all(run > now for run in runs)


# --- DST: brute-force oracle --------------------------------------------------------------------------------
#
# The oracle walks every UTC minute of 2024-2025 (2024 has a leap day) once per zone, converts each to
# local time with zoneinfo, and applies the DST rule written in pipelines/cron.py to every cron:
#   fixed-time (hour field not all 24 hours): a matching local time fires at the first UTC minute at which
#     the local clock reaches or passes it (so a time in a gap fires when the clock jumps over it, and a
#     repeated time fires on its first pass only);
#   every-hour (hour field all 24 hours): every UTC minute whose local reading matches fires.
# Matching local times are enumerated day by day from the spec's field sets, independently of the
# module's field-jumping search and of its zoneinfo fold handling.

WINDOW_START = utc(2024, 1, 1)
WINDOW_END = utc(2026, 1, 1)
WALK_START = WINDOW_START - timedelta(days=2)
UTC_EPOCH = utc(1970, 1, 1)
NAIVE_EPOCH = datetime(1970, 1, 1)  # local readings are naive
MINUTES_PER_DAY = 24 * 60
ORACLE_ZONES = [NEW_YORK, BERLIN, SYDNEY, LORD_HOWE, KOLKATA]
ORACLE_CRONS = [
    "30 2 * * *",
    "0 2 * * *",
    "30 1 * * *",
    "*/15 * * * *",
    "0 */6 * * *",
    "0 0 1 * *",
    "0 9 * * 1-5",
    "15 3 29 2 *",
    "0 0 1,15 * 1",
    "45 23 31 12 *",
    "30 * * * *",
    "0,30 2 * * *",
    "*/20 2 * * *",
    "*/30 1-3 * * *",
    "0 0 */2 * MON",
    "5 4 * * SUN",
]
# Counts that hold in every zone: a fixed-time job fires once per matching local date whatever the clock
# does, and an every-hour job on quarter hours keeps its cadence in real time.
EXPECTED_COUNTS = {
    "30 2 * * *": 731,
    "0 2 * * *": 731,
    "30 1 * * *": 731,
    "0 0 1 * *": 24,
    "15 3 29 2 *": 1,
    "45 23 31 12 *": 2,
    "*/15 * * * *": 731 * 96,
}


@dataclass
class Walk:
    """Every UTC minute from WALK_START to WINDOW_END, seen on a zone's local clock."""

    readings: list[int]  # local reading of UTC minute i, in naive minutes since 1970-01-01
    first_reached: list[int]  # for local reading readings[0] + k: the first UTC minute i reading >= it


def walk_zone(tz: ZoneInfo) -> Walk:
    readings = []
    instant = WALK_START
    utc_minute = (WALK_START - UTC_EPOCH) // MINUTE
    while instant <= WINDOW_END:
        readings.append(utc_minute + instant.astimezone(tz).utcoffset() // MINUTE)
        instant += MINUTE
        utc_minute += 1
    first_reached = []
    highest = readings[0] - 1
    for index, reading in enumerate(readings):
        while highest < reading:  # readings the clock shows, or jumps over, for the first time
            highest += 1
            first_reached.append(index)
    return Walk(readings, first_reached)


def matching_readings(spec: CronSpec, first_reading: int, last_reading: int) -> set[int]:
    """All local readings (naive minutes) in the range that match the expression, day by day."""
    matching = set()
    for day_number in range(first_reading // MINUTES_PER_DAY, last_reading // MINUTES_PER_DAY + 1):
        day = (NAIVE_EPOCH + timedelta(days=day_number)).date()
        in_month = day.day in spec.days_of_month
        in_week = day.isoweekday() % 7 in spec.days_of_week
        if spec.day_of_month_star or spec.day_of_week_star:
            day_matches = in_month and in_week
        else:
            day_matches = in_month or in_week
        if day.month in spec.months and day_matches:
            for hour in spec.hours:
                for minute in spec.minutes:
                    reading = day_number * MINUTES_PER_DAY + hour * 60 + minute
                    if first_reading <= reading <= last_reading:
                        matching.add(reading)
    return matching


def oracle_fires(spec: CronSpec, walk: Walk) -> list[datetime]:
    first_reading = walk.readings[0]
    matching = matching_readings(spec, first_reading, first_reading + len(walk.first_reached) - 1)
    if all(hour in spec.hours for hour in range(24)):
        indexes = [index for index, reading in enumerate(walk.readings) if reading in matching]
    else:
        indexes = sorted({walk.first_reached[reading - first_reading] for reading in matching})
    fires = [WALK_START + index * MINUTE for index in indexes]
    return [fire for fire in fires if WINDOW_START < fire <= WINDOW_END]


def chained_fires(spec: CronSpec, tz: ZoneInfo) -> list[datetime]:
    fires = []
    fire = next_run_after(spec, tz, WINDOW_START)
    while fire <= WINDOW_END:
        fires.append(fire)
        fire = next_run_after(spec, tz, fire)
    return fires


def first_difference(tz: ZoneInfo, got: list[datetime], expected: list[datetime]) -> str:
    for index, (mine, oracle) in enumerate(zip(got, expected, strict=False)):
        if mine != oracle:
            return f"#{index}: got {local(mine, tz)} {iso(mine)}, oracle {local(oracle, tz)} {iso(oracle)}"
    return f"lengths differ: next_run_after {len(got)}, oracle {len(expected)}"


@pytest.mark.slow
@pytest.mark.parametrize("tz", ORACLE_ZONES, ids=str)
def test_next_run_matches_minute_by_minute_oracle_over_two_years(tz: ZoneInfo) -> None:
    walk = walk_zone(tz)
    mismatches = []
    counts = {}

    for expression in ORACLE_CRONS:
        spec = parse_cron(expression)
        expected = oracle_fires(spec, walk)
        got = chained_fires(spec, tz)
        if got != expected:
            mismatches.append(f"{expression}: {first_difference(tz, got, expected)}")
        counts[expression] = len(expected)

    assert mismatches == []
    assert {expression: counts[expression] for expression in EXPECTED_COUNTS} == EXPECTED_COUNTS
