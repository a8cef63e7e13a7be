"""Shared pieces of the sample export generators: seeded randomness, exact money, billing periods, the tag
sets all three clouds use, and the export container every provider returns. Each provider's own catalog
(services/SKUs/meters, projects/accounts/subscriptions, regions) lives in its module.

Everything here is deterministic: a day's rows depend only on (provider, seed, day) through ``day_rng``,
so a restated export can regenerate the same base rows and change only what the restatement touches."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

MAX_ROWS_PER_DAY = 1_000_000

Row = dict[str, Any]
# A generated row with the day it belongs to and its net cost, computed from the exact values used to
# build the row (never read back from the row).
Record = tuple[date, Decimal, Row]
# Called as ``progress(rows_done, rows_expected)`` every ``PROGRESS_EVERY`` rows and once at the end.
ProgressCallback = Callable[[int, int], None]
PROGRESS_EVERY = 10_000

ZERO = Decimal(0)
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
NANO = Decimal("0.000000001")


def money(value: Decimal, exponent: Decimal) -> Decimal:
    """``value`` rounded half-even to ``exponent`` (``CENT``, ``MICRO``, ``NANO``)."""
    return value.quantize(exponent, rounding=ROUND_HALF_EVEN)


def restated_amount(amount: Decimal, factor: Decimal, step: Decimal) -> Decimal:
    """``amount * factor`` rounded to ``step``, and never equal to ``amount`` nor below ``step``.

    Restatements must change the row they touch, even when the factor rounds away."""
    changed = money(amount * factor, step)
    if changed < step or changed == amount:
        changed = amount + step
    return changed


def day_rng(provider: str, seed: int, day: date, purpose: str = "rows") -> random.Random:
    """A ``random.Random`` for one provider, seed, day and purpose.

    String seeds go through SHA-512 inside ``random``, so the stream is identical across processes and
    ``PYTHONHASHSEED`` values."""
    return random.Random(f"{provider}|{seed}|{day.isoformat()}|{purpose}")


def stable_uuid(name: str) -> str:
    """A GUID that depends only on ``name`` (catalog identifiers that must not move between runs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"convergence-sample-exports/{name}"))


def random_hex(rng: random.Random, length: int) -> str:
    """``length`` lowercase hex digits drawn from ``rng``."""
    return f"{rng.getrandbits(4 * length):0{length}x}"


def days_in_range(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end`` inclusive; ``ValueError`` when ``end`` is before ``start``."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def validate_rows_per_day(rows_per_day: int) -> None:
    """``ValueError`` unless 1 <= ``rows_per_day`` <= ``MAX_ROWS_PER_DAY``."""
    if not 1 <= rows_per_day <= MAX_ROWS_PER_DAY:
        raise ValueError(f"rows per day must be between 1 and {MAX_ROWS_PER_DAY:,}, got {rows_per_day}")


def month_start(day: date) -> date:
    """The first day of ``day``'s calendar month (every provider's billing period here is one)."""
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    """The first day of the month after ``day``'s (the exclusive end of its billing period)."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def month_last_day(day: date) -> date:
    """The last day of ``day``'s month (Azure's inclusive billing period end)."""
    return next_month_start(day) - timedelta(days=1)


def period_anchor_days(days: list[date]) -> set[date]:
    """The first generated day of every billing month in ``days``.

    Once-a-period rows (purchases, marketplace fees, refunds, monthly tax) are anchored there, so every
    generated range has them even when it starts mid-month."""
    anchors: dict[date, date] = {}
    for day in days:
        anchors.setdefault(month_start(day), day)
    return set(anchors.values())


def midnight(day: date) -> datetime:
    """``day`` at 00:00 UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class Region:
    """A provider region with what the exports say about it."""

    code: str
    name: str
    country: str
    zones: tuple[str, ...]


# Tag values shared by all three providers, so tag:team / tag:env group-bys line up across clouds.
ENVIRONMENTS = ("prod", "staging", "dev")
TEAMS = ("data", "platform", "web", "ml")
APPLICATIONS = ("etl", "checkout", "search", "reporting")
COST_CENTERS = ("CC-1001", "CC-2040", "CC-3300")


def tag_sets(environment: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The resource tag combinations used in an environment, untagged resources included (as ``()``)."""
    combos: list[tuple[tuple[str, str], ...]] = [()]
    for team in TEAMS:
        for application in APPLICATIONS[: 2 + TEAMS.index(team) % 3]:
            cost_center = COST_CENTERS[(TEAMS.index(team) + APPLICATIONS.index(application)) % 3]
            combos.append((("env", environment), ("team", team), ("app", application)))
            combos.append(
                (("env", environment), ("team", team), ("app", application), ("cost-center", cost_center))
            )
    return tuple(combos)


@dataclass
class SampleExport:
    """A lazily generated export: iterate it for rows; after a full pass it knows the expected net cost.

    ``source`` yields ``(day, net_cost, row)``; the net cost is computed by the generator from the exact
    decimals it used for the row, independently of any file. ``net_cost_by_day`` and ``rows_by_day`` are
    complete only after the iteration finished (``RuntimeError`` before that); iterating again regenerates
    the same rows and recounts."""

    provider: str
    start: date
    end: date
    rows_per_day: int
    seed: int
    restated: bool
    currency: str
    source: Callable[[], Iterator[Record]]
    _net_cost_by_day: dict[date, Decimal] = field(default_factory=dict, repr=False)
    _rows_by_day: dict[date, int] = field(default_factory=dict, repr=False)
    _complete: bool = field(default=False, repr=False)

    @property
    def days(self) -> list[date]:
        return days_in_range(self.start, self.end)

    def records(self, progress: ProgressCallback | None = None) -> Iterator[tuple[date, Row]]:
        """Every row with the day it belongs to, counting rows and net cost per day as it goes."""
        self._complete = False
        self._net_cost_by_day = dict.fromkeys(self.days, ZERO)
        self._rows_by_day = dict.fromkeys(self.days, 0)
        expected = len(self.days) * self.rows_per_day
        done = 0
        for day, net_cost, row in self.source():
            self._net_cost_by_day[day] += net_cost
            self._rows_by_day[day] += 1
            yield day, row
            done += 1
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done, max(done, expected))
        self._complete = True
        if progress is not None:
            progress(done, done)

    def __iter__(self) -> Iterator[Row]:
        for _day, row in self.records():
            yield row

    @property
    def net_cost_by_day(self) -> dict[date, Decimal]:
        """Expected net cost per day (exact); the contract per provider is in its module docstring."""
        self._require_complete()
        return dict(self._net_cost_by_day)

    @property
    def rows_by_day(self) -> dict[date, int]:
        self._require_complete()
        return dict(self._rows_by_day)

    @property
    def row_count(self) -> int:
        return sum(self.rows_by_day.values())

    @property
    def total_net_cost(self) -> Decimal:
        return sum(self.net_cost_by_day.values(), ZERO)

    def _require_complete(self) -> None:
        if not self._complete:
            raise RuntimeError("iterate the export to the end before reading its totals")


@dataclass(frozen=True)
class WriteSummary:
    """What a writer produced: the files (sorted), the rows and the expected net cost per day."""

    provider: str
    files: tuple[Path, ...]
    rows: int
    currency: str
    net_cost_by_day: dict[date, Decimal]

    @property
    def total_net_cost(self) -> Decimal:
        return sum(self.net_cost_by_day.values(), ZERO)


def plan_specials(rows_per_day: int, specials: tuple[tuple[str, int], ...]) -> tuple[set[str], int]:
    """Which special rows (name, row count) fit in a day of ``rows_per_day`` rows, in order, keeping
    at least one regular usage row; returns the planned names and the number of regular rows."""
    planned: set[str] = set()
    used = 0
    for name, size in specials:
        if used + size <= rows_per_day - 1:
            planned.add(name)
            used += size
    return planned, rows_per_day - used


def restated_indexes(rng: random.Random | None, regular: int, share: float) -> set[int]:
    """The regular rows a restated export changes: a ``share`` of them (at least one), drawn from the
    restatement's own RNG; none when there is no restatement."""
    if rng is None:
        return set()
    return set(rng.sample(range(regular), max(1, int(regular * share))))
