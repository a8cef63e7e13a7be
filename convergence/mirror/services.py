"""The mirror drain: outbox events → MERGE/DELETE by key into the warehouse central dataset.

Delivery contract. Events are written by triggers in the changing transaction (at-least-once: an
event exists for every committed change and is deleted only after its central rows were written).
The drain coalesces events per (table, key), reads each row's *current* state, MERGEs present rows
and DELETEs absent ones by key, then deletes exactly the event ids it read. Writing the current state
by key is idempotent, so redelivery after a crash or a failed delete changes nothing: an exactly-once
effect. An event committed while a drain runs has a new id and is delivered by the next drain.

One drain at a time (a PostgreSQL advisory lock, or a file lock on SQLite). Two overlapping drains
could otherwise write one row's states out of order: an older read landing after a newer one, with
the newer event already deleted. ``SKIP LOCKED`` on outbox rows would not prevent that, because two
events of one row are different outbox rows.

A central table that is missing or that the warehouse refuses keeps its events (logged, retried by
the next drain); other tables are still delivered."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from convergence.mirror.tables import (
    MIRRORED_AT,
    MirrorTable,
    central_key,
    central_schema,
    concrete_field,
    installed_tables,
    sources_by_table,
)
from convergence.models import OutboxEvent
from convergence.warehouse import (
    Field,
    JobLabels,
    ScalarParam,
    TableRef,
    Warehouse,
    WarehouseError,
    WriteMode,
    get_warehouse,
)
from convergence.warehouse.base import IDENTIFIER_PATTERN

logger = logging.getLogger(__name__)

#: pg_try_advisory_lock key of the drain (any constant unique within the database).
ADVISORY_LOCK_KEY = 0x6D6972726F72  # "mirror"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_LABELS = JobLabels(step="mirror")


class MirrorTableMissing(WarehouseError):
    """The central dataset or table does not exist (bootstrap has not run)."""


@dataclass
class DrainResult:
    """What one drain did. ``locked_out``: another drain held the lock and nothing was done.
    ``events_kept`` counts events left for the next drain because a table failed."""

    locked_out: bool = False
    events_read: int = 0
    events_delivered: int = 0
    events_kept: int = 0
    rows_upserted: dict[str, int] = field(default_factory=dict)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    failed_tables: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return not self.locked_out and not self.failed_tables

    def summary(self) -> str:
        if self.locked_out:
            return "mirror: another drain is running; nothing done"
        text = (
            f"mirror: {self.events_delivered} event(s) delivered, {self.events_kept} kept; "
            f"{sum(self.rows_upserted.values())} row(s) merged, {sum(self.rows_deleted.values())} deleted"
        )
        if self.failed_tables:
            text += "; failed: " + ", ".join(
                f"{name} ({reason})" for name, reason in sorted(self.failed_tables.items())
            )
        return text


@contextlib.contextmanager
def drain_lock() -> Iterator[bool]:
    """Hold the single-drain lock for the block; yields False (without waiting) if it is taken.

    PostgreSQL: a session advisory lock, released at the end or when the session dies. SQLite (the
    single-machine default): an exclusive ``flock`` on ``VAR_DIR/mirror-drain.lock``."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            row = cursor.fetchone()
        acquired = bool(row and row[0])
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
        return
    path = settings.VAR_DIR / "mirror-drain.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def mirror_drain(
    *,
    warehouse: Warehouse | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> DrainResult:
    """Deliver pending outbox events to the central dataset; see the module docstring for the
    contract. Reads up to ``batch_size`` events per round and at most ``max_batches`` rounds, so one
    call is bounded; the rest waits for the next drain. Never raises for a warehouse failure (it is
    in ``failed_tables`` and logged); returns ``locked_out`` if another drain is running."""
    batch_size = batch_size or settings.MIRROR_BATCH_SIZE
    max_batches = max_batches or settings.MIRROR_MAX_BATCHES
    result = DrainResult()
    with drain_lock() as acquired:
        if not acquired:
            result.locked_out = True
            return result
        writer = _CentralWriter(warehouse or get_warehouse())
        routes = sources_by_table()
        blocked: set[str] = set()
        for _ in range(max_batches):
            events = list(
                OutboxEvent.objects.exclude(table_name__in=blocked)
                .order_by("id")
                .values_list("id", "table_name", "row_pk")[:batch_size]
            )
            if not events:
                break
            result.events_read += len(events)
            failed_sources = _deliver(events, routes, writer, result)
            blocked |= failed_sources
            if len(events) < batch_size:
                break
    if result.failed_tables:
        logger.error("mirror drain incomplete: %s", result.summary())
    elif result.events_read:
        logger.info("%s", result.summary())
    return result


def _deliver(
    events: Sequence[tuple[int, str, str]],
    routes: dict[str, list[Any]],
    writer: _CentralWriter,
    result: DrainResult,
) -> set[str]:
    """Deliver one batch; delete the events whose every central table succeeded. Returns the source
    tables with kept events (the next round skips them, so one failing table cannot starve the rest)."""
    keys_by_source: dict[str, set[str]] = {}
    for _event_id, table_name, row_pk in events:
        keys_by_source.setdefault(table_name, set()).add(row_pk)
    # Central table → the central keys its sources' events touch.
    touched: dict[str, set[str]] = {}
    feeds: dict[str, set[str]] = {}  # source table → central tables it feeds
    tables: dict[str, MirrorTable] = {}
    for source_table, raw_keys in keys_by_source.items():
        for mirror_table, source, model in routes.get(source_table, []):
            tables[mirror_table.name] = mirror_table
            feeds.setdefault(source_table, set()).add(mirror_table.name)
            if source.resolve is None:
                keys = {central_key(model, source.event_key, raw) for raw in raw_keys}
            else:
                event_field = concrete_field(model, source.event_key)
                values = []
                for raw in raw_keys:
                    with contextlib.suppress(ValidationError):
                        values.append(event_field.to_python(raw))
                keys = set(source.resolve(values))
            touched.setdefault(mirror_table.name, set()).update(keys)
    failed: set[str] = set()
    for name in sorted(touched):
        try:
            upserted, deleted = writer.sync(tables[name], sorted(touched[name]))
        except WarehouseError as exc:
            failed.add(name)
            result.failed_tables[name] = exc.message
            logger.error("mirror: central table %s not written, its events are kept: %s", name, exc.message)
            continue
        result.rows_upserted[name] = result.rows_upserted.get(name, 0) + upserted
        result.rows_deleted[name] = result.rows_deleted.get(name, 0) + deleted
    unknown = sorted(set(keys_by_source) - set(routes))
    if unknown:
        # A table no longer mirrored (or captured by hand): nothing to deliver; drop its events.
        logger.warning("mirror: dropping events of unmapped table(s) %s", ", ".join(unknown))
    failed_sources = {source for source, targets in feeds.items() if targets & failed}
    delivered = [event_id for event_id, table_name, _ in events if table_name not in failed_sources]
    for start in range(0, len(delivered), 1000):
        OutboxEvent.objects.filter(id__in=delivered[start : start + 1000]).delete()
    result.events_delivered += len(delivered)
    result.events_kept += len(events) - len(delivered)
    return failed_sources


class _CentralWriter:
    """Writes current rows into central tables: MERGE by key for present rows, DELETE for absent."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.dataset = settings.CENTRAL_DATASET
        if not _IDENTIFIER.fullmatch(self.dataset):
            raise ValueError(f"CENTRAL_DATASET {self.dataset!r} is not a valid dataset name")
        self.checked: set[str] = set()

    def sync(self, table: MirrorTable, keys: Sequence[str]) -> tuple[int, int]:
        """Make the central rows of ``keys`` equal the current Postgres rows; returns (merged, deleted)."""
        ref = TableRef(self.dataset, table.name)
        if table.name not in self.checked:
            if not self.warehouse.table_exists(ref):
                raise MirrorTableMissing(
                    f"central table {ref} does not exist: run `manage.py bootstrap` (system/bootstrap)"
                )
            self.checked.add(table.name)
        rows = table.fetch(keys)
        absent = [key for key in keys if key not in rows]
        schema = central_schema(table.name)
        chunk = settings.MIRROR_ROWS_PER_STATEMENT
        present = list(rows.values())
        for start in range(0, len(present), chunk):
            self.warehouse.query_to_table(
                merge_source_sql(schema),
                ref,
                params={"rows": ScalarParam("JSON", json.dumps(present[start : start + chunk]))},
                write_mode=WriteMode.MERGE,
                merge_keys=[table.key],
                labels=_LABELS,
            )
        for start in range(0, len(absent), chunk):
            self.warehouse.query(
                f"DELETE FROM {ref} WHERE {table.key} IN UNNEST(@keys)",
                {"keys": ScalarParam("ARRAY<STRING>", absent[start : start + chunk])},
                labels=_LABELS,
            )
        return len(present), len(absent)


def merge_source_sql(schema: Sequence[Field]) -> str:
    """A BigQuery SELECT turning ``@rows`` (a JSON array of row objects) into the schema's columns and
    types; ``mirrored_at`` is the write time. The rows travel as one JSON parameter, so no value ever
    enters the SQL text, and the same statement runs on BigQuery and (transpiled) on DuckDB."""
    columns = []
    for item in schema:
        name = item.name
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"invalid central column name {name!r}")
        if name == MIRRORED_AT:
            columns.append(f"CURRENT_TIMESTAMP() AS {name}")
        elif item.type == "JSON":
            columns.append(f"JSON_QUERY(r, '$.{name}') AS {name}")
        elif item.type == "STRING":
            columns.append(f"JSON_VALUE(r, '$.{name}') AS {name}")
        else:
            columns.append(f"CAST(JSON_VALUE(r, '$.{name}') AS {item.type}) AS {name}")
    return "SELECT " + ", ".join(columns) + " FROM UNNEST(JSON_QUERY_ARRAY(@rows)) AS r"


def mirror_resync(*, tables: Sequence[str] | None = None, warehouse: Warehouse | None = None) -> int:
    """Request a full re-delivery: one ``R`` event for every row of the mirrored Postgres tables and
    for every key present centrally (so central orphans, e.g. rows deleted while the triggers were
    not installed, are deleted by the next drain). Returns the number of events written.
    ``tables`` limits it to those central table names."""
    warehouse = warehouse or get_warehouse()
    now = timezone.now()
    events: list[OutboxEvent] = []
    for table in installed_tables():
        if tables is not None and table.name not in tables:
            continue
        model = table.model_class()
        assert model is not None
        keys = set(table.fetch_all())
        ref = TableRef(settings.CENTRAL_DATASET, table.name)
        if warehouse.table_exists(ref):
            keys |= {
                str(row[table.key])
                for row in warehouse.query(f"SELECT {table.key} FROM {ref}", labels=_LABELS).rows
            }
        # Events on the driving model's table carry the central key itself (an identity source).
        db_table = model._meta.db_table
        events.extend(
            OutboxEvent(table_name=db_table, row_pk=key, operation="R", created_at=now)
            for key in sorted(keys)
        )
    OutboxEvent.objects.bulk_create(events, batch_size=1000)
    return len(events)
