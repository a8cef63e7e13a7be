"""The outbox triggers: AFTER INSERT/UPDATE/DELETE FOR EACH ROW on every mirrored table, writing
``(table, key, operation, time)`` into ``convergence_outboxevent`` in the changing transaction.

Triggers rather than Django signals because several writes are ``QuerySet.update`` or raw SQL (quota
admission, run claim/heartbeat/finish), which send no signal; a trigger sees every write whatever
issued it. A key change (never done by the application, but possible by hand) records the old key
too, so the old central row is removed.

Installed by migration ``convergence.0001_initial`` and again, idempotently, after every ``migrate``
(``post_migrate``): SQLite drops a table's triggers when Django rebuilds the table for an ALTER, and
tables created by later migrations of other apps get theirs then. PostgreSQL (production and tests)
and SQLite (``make run``) are supported; other vendors raise ``NotImplementedError``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

OUTBOX_TABLE = "convergence_outboxevent"
TRIGGER_NAME = "convergence_outbox"
_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class CapturedTable:
    """A table whose row changes go to the outbox, and the column recorded as the event key."""

    table: str
    key_column: str

    def __post_init__(self) -> None:
        # Names are interpolated into DDL: only plain lower-case identifiers are accepted.
        for name in (self.table, self.key_column):
            if not _SQL_NAME.fullmatch(name):
                raise ValueError(f"not a plain SQL identifier: {name!r}")


def _postgres_function(table: str) -> str:
    return f"{TRIGGER_NAME}_{table}"[:63]


def postgres_install_sql(captured: CapturedTable) -> list[str]:
    """CREATE OR REPLACE the table's trigger function and (re)create its trigger."""
    table, key = captured.table, captured.key_column
    insert = f"INSERT INTO {OUTBOX_TABLE} (table_name, row_pk, operation, created_at) VALUES"
    function = _postgres_function(table)
    return [
        f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'DELETE' THEN
        {insert} (TG_TABLE_NAME, OLD."{key}"::text, 'D', clock_timestamp());
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD."{key}" IS DISTINCT FROM NEW."{key}" THEN
        {insert} (TG_TABLE_NAME, OLD."{key}"::text, 'D', clock_timestamp());
    END IF;
    {insert} (TG_TABLE_NAME, NEW."{key}"::text, left(TG_OP, 1), clock_timestamp());
    RETURN NEW;
END
$body$""",
        f'DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON "{table}"',
        f'CREATE TRIGGER {TRIGGER_NAME} AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def postgres_uninstall_sql(captured: CapturedTable) -> list[str]:
    return [
        f'DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON "{captured.table}"',
        f"DROP FUNCTION IF EXISTS {_postgres_function(captured.table)}()",
    ]


# Django stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS[.fff]' text in UTC; %f is seconds.millis.
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def sqlite_install_sql(captured: CapturedTable) -> list[str]:
    """Three triggers (SQLite triggers have one event each), created if missing."""
    table, key = captured.table, captured.key_column
    insert = f"INSERT INTO {OUTBOX_TABLE} (table_name, row_pk, operation, created_at)"
    prefix = f"{TRIGGER_NAME}_{table}"
    return [
        f'CREATE TRIGGER IF NOT EXISTS {prefix}_insert AFTER INSERT ON "{table}" FOR EACH ROW BEGIN '
        f"{insert} VALUES ('{table}', CAST(NEW.\"{key}\" AS TEXT), 'I', {_SQLITE_NOW}); END",
        f'CREATE TRIGGER IF NOT EXISTS {prefix}_update AFTER UPDATE ON "{table}" FOR EACH ROW BEGIN '
        f"{insert} SELECT '{table}', CAST(OLD.\"{key}\" AS TEXT), 'D', {_SQLITE_NOW} "
        f'WHERE OLD."{key}" IS NOT NEW."{key}"; '
        f"{insert} VALUES ('{table}', CAST(NEW.\"{key}\" AS TEXT), 'U', {_SQLITE_NOW}); END",
        f'CREATE TRIGGER IF NOT EXISTS {prefix}_delete AFTER DELETE ON "{table}" FOR EACH ROW BEGIN '
        f"{insert} VALUES ('{table}', CAST(OLD.\"{key}\" AS TEXT), 'D', {_SQLITE_NOW}); END",
    ]


def sqlite_uninstall_sql(captured: CapturedTable) -> list[str]:
    prefix = f"{TRIGGER_NAME}_{captured.table}"
    return [f"DROP TRIGGER IF EXISTS {prefix}_{event}" for event in ("insert", "update", "delete")]


def _statements(vendor: str, captured: CapturedTable, *, install: bool) -> list[str]:
    if vendor == "postgresql":
        return postgres_install_sql(captured) if install else postgres_uninstall_sql(captured)
    if vendor == "sqlite":
        return sqlite_install_sql(captured) if install else sqlite_uninstall_sql(captured)
    raise NotImplementedError(f"outbox triggers support postgresql and sqlite, not {vendor}")


def _postgres_installed(connection: BaseDatabaseWrapper, table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s AND c.relname = %s AND NOT t.tgisinternal",
            [TRIGGER_NAME, table],
        )
        return cursor.fetchone() is not None


def install_triggers(connection: BaseDatabaseWrapper, captured: Iterable[CapturedTable]) -> list[str]:
    """Install the outbox trigger on each table that exists; returns the tables now covered.

    Idempotent. On PostgreSQL an existing trigger is left alone (creating one takes a table lock) and
    only its function is replaced; a missing table is skipped (a later ``migrate`` covers it)."""
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    if OUTBOX_TABLE not in existing:
        return []
    covered: list[str] = []
    for item in captured:
        if item.table not in existing:
            logger.info("outbox trigger for %s deferred: the table does not exist yet", item.table)
            continue
        statements = _statements(connection.vendor, item, install=True)
        if connection.vendor == "postgresql" and _postgres_installed(connection, item.table):
            statements = statements[:1]
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        covered.append(item.table)
    return covered


def uninstall_triggers(connection: BaseDatabaseWrapper, captured: Iterable[CapturedTable]) -> None:
    """Drop the outbox triggers (and PostgreSQL trigger functions) of these tables, where present."""
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    for item in captured:
        statements = _statements(connection.vendor, item, install=False)
        if item.table not in existing:
            # The trigger went with its table; a PostgreSQL function may remain.
            statements = [statement for statement in statements if "FUNCTION" in statement]
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
