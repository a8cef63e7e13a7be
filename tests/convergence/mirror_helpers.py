"""Shared by the mirror tests: read a central table back and compare it with Postgres."""

from __future__ import annotations

from typing import Any

from convergence.mirror.tables import MIRRORED_AT, TABLES, MirrorTable, json_value
from convergence.warehouse import TableRef, Warehouse
from tenants.actors import Actor

ACTOR = Actor.system("test")


def bootstrap_central() -> None:
    from tenants.services import bootstrap_run

    bootstrap_run(actor=ACTOR)


def central_rows(warehouse: Warehouse, table: MirrorTable) -> dict[str, dict[str, Any]]:
    """The central table's rows by key, ``mirrored_at`` left out, values in the JSON-document form
    the mirror writes (timestamps as UTC ISO text, dates as ISO dates)."""
    result = warehouse.query(f"SELECT * FROM tenants.{table.name}")
    rows: dict[str, dict[str, Any]] = {}
    for row in result.rows:
        assert row[MIRRORED_AT] is not None
        normalized = {column: json_value(value) for column, value in row.items() if column != MIRRORED_AT}
        rows[normalized[table.key]] = normalized
    return rows


def postgres_rows(table: MirrorTable) -> dict[str, dict[str, Any]]:
    return table.fetch_all()


def table(name: str) -> MirrorTable:
    return next(item for item in TABLES if item.name == name)


def mismatches(warehouse: Warehouse) -> dict[str, Any]:
    """Per central table, the keys whose rows differ (missing, extra or unequal); empty when equal."""
    differences: dict[str, Any] = {}
    for item in TABLES:
        if item.model_class() is None:
            continue
        central, expected = central_rows(warehouse, item), postgres_rows(item)
        missing = sorted(set(expected) - set(central))
        extra = sorted(set(central) - set(expected))
        unequal = sorted(key for key in set(expected) & set(central) if expected[key] != central[key])
        if missing or extra or unequal:
            differences[item.name] = {
                "missing": missing[:3],
                "extra": extra[:3],
                "unequal": [(expected[key], central[key]) for key in unequal[:2]],
            }
    return differences


def ref(name: str) -> TableRef:
    return TableRef("tenants", name)
