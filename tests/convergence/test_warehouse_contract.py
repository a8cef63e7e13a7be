"""One contract, two backends: every test runs on embedded DuckDB and on the BigQuery emulator.

Where the emulator cannot do what the contract needs, the bigquery case carries
``pytest.mark.emulator_gap(reason=...)`` and asserts the documented failure instead (see EMULATOR_GAPS.md).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from convergence.warehouse import (
    ConflictError,
    Field,
    FileFormat,
    JobLabels,
    NotFoundError,
    ScalarParam,
    TableRef,
    TableSpec,
    Warehouse,
    WarehouseError,
    WriteMode,
)
from convergence.warehouse.duckdb import DuckDBWarehouse

REPO = Path(__file__).resolve().parents[2]
UTC = dt.UTC

BILLING_SCHEMA = (
    Field("billing_account_id", "STRING", "REQUIRED"),
    Field("service", "RECORD", fields=(Field("id", "STRING", "REQUIRED"), Field("description", "STRING"))),
    Field("usage_date", "DATE", "REQUIRED"),
    Field("usage_start_time", "TIMESTAMP"),
    Field("cost", "NUMERIC"),
    Field("labels", "RECORD", "REPEATED", fields=(Field("key", "STRING"), Field("value", "STRING"))),
    Field("credits", "RECORD", "REPEATED", fields=(Field("name", "STRING"), Field("amount", "NUMERIC"))),
    Field("system_labels", "JSON"),
    Field("usage_amount", "FLOAT64"),
    Field("is_free", "BOOL"),
    Field("sequence", "INT64"),
)
BILLING_SPEC = TableSpec(
    schema=BILLING_SCHEMA, partition_field="usage_date", clustering=("billing_account_id", "usage_date")
)
DAY_1 = dt.date(2024, 3, 1)
DAY_2 = dt.date(2024, 3, 2)
BIG = Decimal("12345678901234567890.123456789")  # 29 digits: NUMERIC's full range


def exact(*values: Decimal | int) -> Decimal:
    """Sum without the default 28-digit context, which would round sums involving BIG."""
    with decimal.localcontext(prec=60):
        return sum((Decimal(value) for value in values), Decimal(0))


def billing_rows() -> list[dict[str, Any]]:
    return [
        {
            "billing_account_id": "acct-1",
            "service": {"id": "svc-compute", "description": "Compute Engine"},
            "usage_date": DAY_1,
            "usage_start_time": dt.datetime(2024, 3, 1, 10, 30, tzinfo=UTC),
            "cost": Decimal("1.123456789"),
            "labels": [{"key": "team", "value": "data"}, {"key": "env", "value": "prod"}],
            "credits": [
                {"name": "sud", "amount": Decimal("-0.5")},
                {"name": "cud", "amount": Decimal("-0.25")},
            ],
            "system_labels": {"machine": "n2", "cores": 4},
            "usage_amount": 2.5,
            "is_free": False,
            "sequence": 1,
        },
        {
            "billing_account_id": "acct-1",
            "service": {"id": "svc-storage", "description": "Cloud Storage"},
            "usage_date": DAY_1,
            "usage_start_time": dt.datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC),
            "cost": BIG,
            "labels": [{"key": "team", "value": "web"}],
            "credits": [],
            "system_labels": '{"tier": "standard"}',
            "usage_amount": 0.125,
            "is_free": True,
            "sequence": 2,
        },
        {
            "billing_account_id": "acct-2",
            "service": {"id": "svc-compute", "description": "Compute Engine"},
            "usage_date": DAY_2,
            "usage_start_time": None,
            "cost": Decimal("3"),
            "labels": [],
            "credits": [{"name": "sud", "amount": Decimal("-1.000000001")}],
            "system_labels": None,
            "usage_amount": None,
            "is_free": None,
            "sequence": 3,
        },
    ]


BACKENDS = [
    pytest.param("duckdb", id="duckdb"),
    pytest.param("bigquery", id="bigquery", marks=pytest.mark.bigquery),
]


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        embedded = DuckDBWarehouse(":memory:")
        yield embedded
        embedded.close()
    else:
        yield request.getfixturevalue("bigquery_warehouse")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dataset(warehouse: Warehouse) -> Iterator[str]:
    name = unique("contract")
    warehouse.create_dataset(name, exists_ok=False)
    yield name
    warehouse.drop_dataset(name, delete_contents=True)


@pytest.fixture
def billing(warehouse: Warehouse, dataset: str) -> TableRef:
    """A partitioned billing table holding ``billing_rows()``."""
    ref = TableRef(dataset, "billing")
    warehouse.create_table(ref, BILLING_SPEC)
    assert warehouse.insert_rows(ref, billing_rows()) == 3
    return ref


def count(warehouse: Warehouse, ref: TableRef) -> int:
    return int(warehouse.query(f"SELECT COUNT(*) AS n FROM {ref}").rows[0]["n"])


# --- datasets -----------------------------------------------------------------------------------------
def test_dataset_lifecycle(warehouse: Warehouse) -> None:
    name = unique("lifecycle")
    assert warehouse.dataset_exists(name) is False
    assert warehouse.create_dataset(name, labels={"tenant": "Acme Corp"}) is True
    try:
        assert warehouse.create_dataset(name) is False
        with pytest.raises(ConflictError):
            warehouse.create_dataset(name, exists_ok=False)
        assert warehouse.dataset_exists(name) is True
        listed = warehouse.list_datasets()
        assert name in listed
        assert listed == sorted(listed)
        assert warehouse.list_tables(name) == []
    finally:
        assert warehouse.drop_dataset(name, delete_contents=True) is True
    assert warehouse.dataset_exists(name) is False
    assert name not in warehouse.list_datasets()
    assert warehouse.drop_dataset(name) is False
    with pytest.raises(NotFoundError):
        warehouse.drop_dataset(name, not_found_ok=False)
    with pytest.raises(NotFoundError):
        warehouse.list_tables(name)


def test_drop_non_empty_dataset_needs_delete_contents(warehouse: Warehouse, dataset: str) -> None:
    warehouse.create_table(TableRef(dataset, "t"), TableSpec(schema=(Field("x", "INT64"),)))
    with pytest.raises(WarehouseError) as raised:
        warehouse.drop_dataset(dataset)
    assert not raised.value.retryable
    assert warehouse.dataset_exists(dataset) is True


def test_duckdb_hides_reserved_schemas() -> None:
    embedded = DuckDBWarehouse(":memory:")
    embedded.create_dataset("visible")
    embedded.create_table(TableRef("visible", "t"), BILLING_SPEC)
    assert embedded.list_datasets() == ["visible"]
    assert embedded.dataset_exists("main") is False
    with pytest.raises(WarehouseError):
        embedded.create_dataset("_convergence_meta")


# --- tables -------------------------------------------------------------------------------------------
def test_create_table_describe_round_trip(warehouse: Warehouse, dataset: str) -> None:
    ref = TableRef(dataset, "billing")
    assert warehouse.table_exists(ref) is False
    assert warehouse.create_table(ref, BILLING_SPEC) is True
    assert warehouse.table_exists(ref) is True
    assert warehouse.create_table(ref, BILLING_SPEC) is False
    with pytest.raises(ConflictError):
        warehouse.create_table(ref, BILLING_SPEC, exists_ok=False)

    info = warehouse.describe_table(ref)
    assert info.ref == ref
    assert info.schema == BILLING_SCHEMA
    assert info.partition_field == "usage_date"
    assert info.clustering == ("billing_account_id", "usage_date")
    assert info.num_rows == 0


def test_list_and_drop_tables(warehouse: Warehouse, dataset: str) -> None:
    spec = TableSpec(schema=(Field("x", "INT64"),))
    for table in ("zeta", "alpha", "mid"):
        warehouse.create_table(TableRef(dataset, table), spec)
    assert warehouse.list_tables(dataset) == ["alpha", "mid", "zeta"]
    assert warehouse.drop_table(TableRef(dataset, "mid")) is True
    assert warehouse.drop_table(TableRef(dataset, "mid")) is False
    with pytest.raises(NotFoundError):
        warehouse.drop_table(TableRef(dataset, "mid"), not_found_ok=False)
    assert warehouse.list_tables(dataset) == ["alpha", "zeta"]
    with pytest.raises(NotFoundError):
        warehouse.describe_table(TableRef(dataset, "mid"))


def test_create_table_in_missing_dataset_is_not_found(warehouse: Warehouse) -> None:
    with pytest.raises(NotFoundError):
        warehouse.create_table(TableRef(unique("missing"), "t"), TableSpec(schema=(Field("x", "INT64"),)))


# --- rows and types -----------------------------------------------------------------------------------
def test_insert_rows_round_trip_exact_types(warehouse: Warehouse, billing: TableRef) -> None:
    rows = warehouse.query(f"SELECT * FROM {billing} ORDER BY sequence").rows
    assert [row["sequence"] for row in rows] == [1, 2, 3]
    first, second, third = rows

    assert first["cost"] == Decimal("1.123456789")
    assert isinstance(first["cost"], Decimal)
    assert second["cost"] == BIG
    assert str(second["cost"]) == "12345678901234567890.123456789"
    assert first["usage_date"] == DAY_1
    assert type(first["usage_date"]) is dt.date
    assert first["usage_start_time"] == dt.datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
    assert first["usage_start_time"].utcoffset() == dt.timedelta(0)
    assert first["service"] == {"id": "svc-compute", "description": "Compute Engine"}
    assert first["labels"] == [{"key": "team", "value": "data"}, {"key": "env", "value": "prod"}]
    assert first["credits"] == [
        {"name": "sud", "amount": Decimal("-0.5")},
        {"name": "cud", "amount": Decimal("-0.25")},
    ]
    assert first["system_labels"] == {"machine": "n2", "cores": 4}
    # JSON given as a string is parsed on the way in, as BigQuery does.
    assert second["system_labels"] == {"tier": "standard"}
    assert first["usage_amount"] == 2.5
    assert type(first["usage_amount"]) is float
    assert first["is_free"] is False
    assert second["is_free"] is True
    assert type(first["sequence"]) is int
    assert third["credits"][0]["amount"] == Decimal("-1.000000001")
    assert third["labels"] == []
    assert third["usage_start_time"] is None
    assert third["system_labels"] is None
    assert warehouse.describe_table(billing).num_rows == 3


def test_other_types_round_trip(warehouse: Warehouse, dataset: str) -> None:
    ref = TableRef(dataset, "types")
    spec = TableSpec(
        schema=(
            Field("civil", "DATETIME"),
            Field("raw", "BYTES"),
            Field("wide", "BIGNUMERIC"),
            Field("clock", "TIME"),
            Field("scores", "FLOAT64", "REPEATED"),
            Field("at", "TIMESTAMP", "REQUIRED", description="when it happened"),
        ),
        description="types table",
    )
    warehouse.create_table(ref, spec)
    assert warehouse.describe_table(ref).schema == spec.schema
    warehouse.insert_rows(
        ref,
        [
            {
                "civil": dt.datetime(2024, 3, 1, 12, 30, 15, 123456),
                "raw": b"\x00\xff",
                "wide": Decimal("123.123456789"),
                "clock": dt.time(1, 2, 3),
                "scores": [1.5, 2.0],
                "at": "2024-03-01T12:00:00+01:00",
            }
        ],
    )
    rows = warehouse.query(f"SELECT * FROM {ref}").rows
    assert rows == [
        {
            "civil": dt.datetime(2024, 3, 1, 12, 30, 15, 123456),
            "raw": b"\x00\xff",
            "wide": Decimal("123.123456789"),
            "clock": dt.time(1, 2, 3),
            "scores": [1.5, 2.0],
            "at": dt.datetime(2024, 3, 1, 11, 0, tzinfo=UTC),
        }
    ]
    assert rows[0]["civil"].tzinfo is None


def test_numeric_literals_keep_nine_decimals(warehouse: Warehouse) -> None:
    row = warehouse.query(
        "SELECT CAST('1.123456789' AS NUMERIC) AS small, "
        "CAST('12345678901234567890.123456789' AS NUMERIC) AS big, "
        "SAFE_CAST('0.000000001' AS NUMERIC) AS tiny, SUM(x) AS total "
        "FROM UNNEST([CAST('0.1' AS NUMERIC), CAST('0.2' AS NUMERIC)]) AS x"
    ).rows[0]
    assert row == {
        "small": Decimal("1.123456789"),
        "big": BIG,
        "tiny": Decimal("0.000000001"),
        "total": Decimal("0.3"),
    }


def test_named_params_of_every_type(warehouse: Warehouse) -> None:
    stamp = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    result = warehouse.query(
        "SELECT @s AS s, @i AS i, @f AS f, @b AS b, @n AS n, @d AS d, @t AS t, "
        "ARRAY_LENGTH(@names) AS names, ARRAY_LENGTH(@empty) AS empty, @typed_null IS NULL AS typed_null, "
        "DATE_ADD(@explicit_date, INTERVAL 1 DAY) AS next_day",
        {
            "s": "text",
            "i": 42,
            "f": 1.5,
            "b": True,
            "n": Decimal("1.123456789"),
            "d": DAY_1,
            "t": stamp,
            "names": ["a", "b", "c"],
            "empty": ScalarParam("ARRAY<STRING>", []),
            "typed_null": ScalarParam("DATE", None),
            "explicit_date": ScalarParam("DATE", "2024-02-28"),
        },
        labels=JobLabels(tenant="Acme Corp", run="Run:2024-03-01/ü", step="extract"),
    )
    assert result.rows == [
        {
            "s": "text",
            "i": 42,
            "f": 1.5,
            "b": True,
            "n": Decimal("1.123456789"),
            "d": DAY_1,
            "t": stamp,
            "names": 3,
            "empty": 0,
            "typed_null": True,
            "next_day": dt.date(2024, 2, 29),
        }
    ]
    row = result.rows[0]
    assert type(row["b"]) is bool and type(row["i"]) is int and type(row["d"]) is dt.date


def test_array_param_in_unnest(warehouse: Warehouse, billing: TableRef) -> None:
    rows = warehouse.query(
        f"SELECT sequence FROM {billing} WHERE service.id IN UNNEST(@services) AND usage_date >= @since "
        "AND sequence IN UNNEST(@sequences) ORDER BY sequence",
        {"services": ["svc-compute", "svc-other"], "since": DAY_1, "sequences": [1, 3]},
    ).rows
    assert rows == [{"sequence": 1}, {"sequence": 3}]


def test_string_param_carrying_sql_is_matched_literally(warehouse: Warehouse, billing: TableRef) -> None:
    injection = "x' OR '1'='1"
    result = warehouse.query(
        f"SELECT COUNT(*) AS n FROM {billing} WHERE billing_account_id = @account", {"account": injection}
    )
    assert result.rows == [{"n": 0}]
    assert injection not in result.sql
    assert "1'='1" not in result.sql
    echoed = warehouse.query("SELECT @account AS account", {"account": injection}).rows
    assert echoed == [{"account": injection}]


def test_aliased_unnest_label_lookup(warehouse: Warehouse, billing: TableRef) -> None:
    rows = warehouse.query(
        f"SELECT sequence, (SELECT l.value FROM UNNEST(labels) AS l WHERE l.key = 'team') AS team "
        f"FROM {billing} ORDER BY sequence"
    ).rows
    assert rows == [
        {"sequence": 1, "team": "data"},
        {"sequence": 2, "team": "web"},
        {"sequence": 3, "team": None},
    ]
    grouped = warehouse.query(
        f"SELECT l.key AS key, COUNT(*) AS n FROM {billing}, UNNEST(labels) AS l GROUP BY l.key ORDER BY key"
    ).rows
    assert grouped == [{"key": "env", "n": 1}, {"key": "team", "n": 2}]


def test_credits_sum_correlated_subquery(warehouse: Warehouse, billing: TableRef) -> None:
    result = warehouse.query(
        f"SELECT sequence, cost + IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0) AS net "
        f"FROM {billing} ORDER BY sequence"
    )
    assert result.rows == [
        {"sequence": 1, "net": Decimal("0.373456789")},
        {"sequence": 2, "net": BIG},
        {"sequence": 3, "net": Decimal("1.999999999")},
    ]
    total = warehouse.query(
        f"SELECT SUM(cost + IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) c), 0)) AS total FROM {billing}"
    ).rows[0]["total"]
    assert total == exact(Decimal("0.373456789"), BIG, Decimal("1.999999999"))
    if warehouse.kind == "duckdb":
        # The fast DuckDB form, not the correlated subquery (DESIGN.md "Performance").
        assert "LIST_SUM(LIST_TRANSFORM(credits, LAMBDA c : c.amount))" in result.sql
        assert "UNNEST" not in result.sql


TAGS_JSON = (
    "CONCAT('{{', (SELECT STRING_AGG(CONCAT(TO_JSON_STRING(t.key), ':', IFNULL(TO_JSON_STRING(t.value), "
    "'null')), ',' ORDER BY o) FROM UNNEST({array}) AS t WITH OFFSET AS o), '}}')"
)


def test_string_agg_over_unnest(warehouse: Warehouse, billing: TableRef) -> None:
    result = warehouse.query(
        f"SELECT sequence, {TAGS_JSON.format(array='labels')} AS tags, "
        f"(SELECT STRING_AGG(c.name) FROM UNNEST(credits) AS c) AS names FROM {billing} ORDER BY sequence"
    )
    rows = [{**row, "names": row["names"] and sorted(row["names"].split(","))} for row in result.rows]
    assert rows == [
        {"sequence": 1, "tags": '{"team":"data","env":"prod"}', "names": ["cud", "sud"]},
        {"sequence": 2, "tags": '{"team":"web"}', "names": None},  # empty array: NULL, as STRING_AGG
        {"sequence": 3, "tags": None, "names": ["sud"]},
    ]
    literal = (
        "[STRUCT('b' AS key, CAST(NULL AS STRING) AS value), STRUCT('a\"/\\\\' AS key, 'x' AS value), "
        "STRUCT('b' AS key, '' AS value)]"
    )
    # The array comes from a subquery: the emulator does not parse WITH OFFSET on an array literal.
    ordered = warehouse.query(
        f"SELECT {TAGS_JSON.format(array='tags')} AS tags FROM (SELECT {literal} AS tags)"
    ).rows
    # Offset order (not sorted), NULL value as null, duplicate keys kept, TO_JSON_STRING escaping.
    assert ordered == [{"tags": '{"b":null,"a\\"/\\\\":"x","b":""}'}]
    if warehouse.kind == "duckdb":
        # The list form, not a correlated join (DESIGN.md "Performance").
        assert "LIST_AGGREGATE(LIST_TRANSFORM(labels, LAMBDA t : " in result.sql
        assert "LIST_AGGREGATE(LIST_TRANSFORM(credits, LAMBDA c : c.name), 'string_agg', ',')" in result.sql
        assert "UNNEST" not in result.sql


@pytest.mark.parametrize(
    "aggregate",
    [
        "STRING_AGG(t.key, ',' ORDER BY o DESC)",  # not list order
        "STRING_AGG(t.key, ',' ORDER BY t.value)",  # not list order
        "STRING_AGG(DISTINCT t.key)",
        "STRING_AGG(CONCAT(t.key, billing_account_id))",  # reads the outer row
        "STRING_AGG(CONCAT(t.key, CAST(o AS STRING)))",  # reads the offset
    ],
)
def test_duckdb_keeps_other_string_aggs_correlated(aggregate: str) -> None:
    embedded = DuckDBWarehouse(":memory:")
    try:
        name = unique("contract")
        embedded.create_dataset(name)
        ref = TableRef(name, "billing")
        embedded.create_table(ref, BILLING_SPEC)
        embedded.insert_rows(ref, billing_rows())
        result = embedded.query(
            f"SELECT (SELECT {aggregate} FROM UNNEST(labels) AS t WITH OFFSET AS o) AS agg FROM {ref} "
            "WHERE sequence = 1"
        )
        assert "LIST_AGGREGATE" not in result.sql
        assert len(result.rows) == 1 and result.rows[0]["agg"]
    finally:
        embedded.close()


def test_date_functions_return_dates(warehouse: Warehouse, billing: TableRef) -> None:
    rows = warehouse.query(
        f"SELECT DATE_TRUNC(usage_date, MONTH) AS month, DATE_ADD(usage_date, INTERVAL 1 DAY) AS next_day, "
        f"DATE_SUB(usage_date, INTERVAL 1 MONTH) AS month_before, DATE(usage_start_time) AS start_day "
        f"FROM {billing} WHERE sequence = 2"
    ).rows
    assert rows == [
        {
            "month": dt.date(2024, 3, 1),
            "next_day": dt.date(2024, 3, 2),
            "month_before": dt.date(2024, 2, 1),
            "start_day": DAY_1,
        }
    ]
    assert all(type(value) is dt.date for value in rows[0].values())


def test_dml_reports_rows_affected(warehouse: Warehouse, billing: TableRef) -> None:
    updated = warehouse.query(f"UPDATE {billing} SET is_free = TRUE WHERE usage_date = @day", {"day": DAY_1})
    assert updated.rows_affected == 2
    deleted = warehouse.query(f"DELETE FROM {billing} WHERE sequence = @sequence", {"sequence": 3})
    assert deleted.rows_affected == 1
    assert count(warehouse, billing) == 2


# --- query_to_table -----------------------------------------------------------------------------------
DAILY_SQL = (
    "SELECT usage_date, billing_account_id, SUM(cost) AS cost, COUNT(*) AS line_items "
    "FROM {billing} WHERE usage_date = @day GROUP BY usage_date, billing_account_id"
)
DAILY_SPEC = TableSpec(
    schema=(
        Field("usage_date", "DATE"),
        Field("billing_account_id", "STRING"),
        Field("cost", "NUMERIC"),
        Field("line_items", "INT64"),
    ),
    partition_field="usage_date",
)


def test_query_to_table_append_creates_then_doubles(warehouse: Warehouse, billing: TableRef) -> None:
    destination = TableRef(billing.dataset, "copy")
    sql = f"SELECT sequence, cost, usage_date FROM {billing}"
    first = warehouse.query_to_table(
        sql, destination, write_mode=WriteMode.APPEND, labels=JobLabels(tenant="acme", run="r1", step="copy")
    )
    assert first.rows_affected == 3
    assert warehouse.describe_table(destination).schema == (
        Field("sequence", "INT64"),
        Field("cost", "NUMERIC"),
        Field("usage_date", "DATE"),
    )
    second = warehouse.query_to_table(sql, destination, write_mode=WriteMode.APPEND)
    assert second.rows_affected == 3
    totals = warehouse.query(f"SELECT COUNT(*) AS n, SUM(cost) AS cost FROM {destination}").rows[0]
    assert totals == {"n": 6, "cost": exact(Decimal("1.123456789"), BIG, 3, Decimal("1.123456789"), BIG, 3)}


def test_query_to_table_matches_columns_by_name(warehouse: Warehouse, billing: TableRef) -> None:
    destination = TableRef(billing.dataset, "daily")
    warehouse.create_table(destination, DAILY_SPEC)
    result = warehouse.query_to_table(
        f"SELECT line_items, usage_date FROM (SELECT usage_date, COUNT(*) AS line_items FROM {billing} "
        "GROUP BY usage_date)",
        destination,
        write_mode=WriteMode.APPEND,
    )
    assert result.rows_affected == 2
    rows = warehouse.query(f"SELECT * FROM {destination} ORDER BY usage_date").rows
    assert rows == [
        {"usage_date": DAY_1, "billing_account_id": None, "cost": None, "line_items": 2},
        {"usage_date": DAY_2, "billing_account_id": None, "cost": None, "line_items": 1},
    ]
    with pytest.raises(WarehouseError) as raised:
        warehouse.query_to_table("SELECT 1 AS not_a_column", destination, write_mode=WriteMode.APPEND)
    assert not raised.value.retryable
    assert count(warehouse, destination) == 2


def test_query_to_table_append_with_spec(warehouse: Warehouse, billing: TableRef) -> None:
    destination = TableRef(billing.dataset, "daily")
    result = warehouse.query_to_table(
        DAILY_SQL.format(billing=billing), destination, params={"day": DAY_1}, spec=DAILY_SPEC
    )
    assert result.rows_affected == 1
    info = warehouse.describe_table(destination)
    assert info.schema == DAILY_SPEC.schema
    assert info.partition_field == "usage_date"


def test_query_to_table_truncate_replaces(warehouse: Warehouse, billing: TableRef) -> None:
    destination = TableRef(billing.dataset, "daily")
    warehouse.create_table(destination, DAILY_SPEC)
    sql = DAILY_SQL.format(billing=billing)
    warehouse.query_to_table(sql, destination, params={"day": DAY_1}, write_mode=WriteMode.APPEND)
    warehouse.query_to_table(sql, destination, params={"day": DAY_1}, write_mode=WriteMode.APPEND)
    assert count(warehouse, destination) == 2
    result = warehouse.query_to_table(sql, destination, params={"day": DAY_2}, write_mode=WriteMode.TRUNCATE)
    assert result.rows_affected == 1
    rows = warehouse.query(f"SELECT * FROM {destination}").rows
    assert rows == [
        {"usage_date": DAY_2, "billing_account_id": "acct-2", "cost": Decimal("3"), "line_items": 1}
    ]
    info = warehouse.describe_table(destination)
    assert info.partition_field == "usage_date"
    assert info.schema == DAILY_SPEC.schema


def test_query_to_table_replace_partition_is_idempotent(warehouse: Warehouse, billing: TableRef) -> None:
    destination = TableRef(billing.dataset, "daily")
    sql = DAILY_SQL.format(billing=billing)
    for day in (DAY_1, DAY_2):
        warehouse.query_to_table(
            sql, destination, params={"day": day}, write_mode=WriteMode.APPEND, spec=DAILY_SPEC
        )
    summary_sql = (
        f"SELECT usage_date, COUNT(*) AS n, SUM(cost) AS cost, SUM(line_items) AS items "
        f"FROM {destination} GROUP BY usage_date ORDER BY usage_date"
    )
    before = warehouse.query(summary_sql).rows

    # New source data for day 1 only: the rerun must replace day 1 and leave day 2 alone.
    warehouse.insert_rows(billing, [{**billing_rows()[0], "sequence": 4, "cost": Decimal("10")}])
    for _ in range(2):
        result = warehouse.query_to_table(
            sql,
            destination,
            params={"day": DAY_1},
            write_mode=WriteMode.REPLACE_PARTITION,
            replace_predicate="usage_date = @day",
        )
        assert result.rows_affected == 1
        after = warehouse.query(summary_sql).rows
        assert after == [
            {"usage_date": DAY_1, "n": 1, "cost": exact(Decimal("11.123456789"), BIG), "items": 3},
            before[1],
        ]
    assert before[1] == {"usage_date": DAY_2, "n": 1, "cost": Decimal("3"), "items": 1}


def test_query_to_table_merge_upserts(warehouse: Warehouse, dataset: str) -> None:
    destination = TableRef(dataset, "accounts")
    spec = TableSpec(
        schema=(Field("account", "STRING"), Field("region", "STRING"), Field("spend", "NUMERIC"))
    )
    warehouse.create_table(destination, spec)
    warehouse.insert_rows(
        destination,
        [
            {"account": "a", "region": "eu", "spend": Decimal("1")},
            {"account": "b", "region": "us", "spend": Decimal("2")},
        ],
    )
    result = warehouse.query_to_table(
        "SELECT account, region, spend FROM UNNEST(["
        "STRUCT('b' AS account, 'us' AS region, CAST('20.5' AS NUMERIC) AS spend), "
        "STRUCT('c' AS account, 'asia' AS region, CAST('3' AS NUMERIC) AS spend)])",
        destination,
        write_mode=WriteMode.MERGE,
        merge_keys=("account", "region"),
    )
    assert result.rows_affected == 2
    rows = warehouse.query(f"SELECT * FROM {destination} ORDER BY account").rows
    assert rows == [
        {"account": "a", "region": "eu", "spend": Decimal("1")},
        {"account": "b", "region": "us", "spend": Decimal("20.5")},
        {"account": "c", "region": "asia", "spend": Decimal("3")},
    ]


# --- load_file ----------------------------------------------------------------------------------------
LOAD_SPEC = TableSpec(
    schema=(
        Field("name", "STRING"),
        Field("amount", "NUMERIC"),
        Field("day", "DATE"),
        Field("at", "TIMESTAMP"),
        Field("ok", "BOOL"),
        Field("qty", "INT64"),
        Field("attrs", "JSON"),
    )
)


def test_load_csv_append_and_truncate(warehouse: Warehouse, dataset: str, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(
        "name,amount,day,at,ok,qty,attrs\n"
        '"Smith, J",12345678901234567890.123456789,2024-03-01,2024-03-01 01:02:03 UTC,true,7,"{""a"": 1}"\n'
        "plain,0.000000001,2024-03-02,2024-03-02 00:00:00 UTC,false,,\n"
    )
    ref = TableRef(dataset, "csv")
    result = warehouse.load_file(str(path), ref, file_format=FileFormat.CSV, spec=LOAD_SPEC)
    assert result.rows_affected == 2
    warehouse.load_file(f"file://{path}", ref, file_format=FileFormat.CSV)
    assert count(warehouse, ref) == 4
    rows = warehouse.query(f"SELECT * FROM {ref} WHERE name = @name LIMIT 1", {"name": "Smith, J"}).rows
    assert rows == [
        {
            "name": "Smith, J",
            "amount": BIG,
            "day": DAY_1,
            "at": dt.datetime(2024, 3, 1, 1, 2, 3, tzinfo=UTC),
            "ok": True,
            "qty": 7,
            "attrs": {"a": 1},
        }
    ]
    plain = warehouse.query(f"SELECT amount, qty, attrs FROM {ref} WHERE name = 'plain' LIMIT 1").rows
    assert plain == [{"amount": Decimal("0.000000001"), "qty": None, "attrs": None}]
    truncated = warehouse.load_file(str(path), ref, file_format=FileFormat.CSV, write_mode=WriteMode.TRUNCATE)
    assert truncated.rows_affected == 2
    assert count(warehouse, ref) == 2


def test_load_ndjson_nested(warehouse: Warehouse, dataset: str, tmp_path: Path) -> None:
    path = tmp_path / "rows.ndjson"
    documents = [
        {
            "billing_account_id": "acct-9",
            "usage_date": "2024-03-01",
            "cost": "12345678901234567890.123456789",
            "service": {"id": "svc", "description": "Svc"},
            "labels": [{"key": "team", "value": "ops"}],
            "credits": [{"name": "sud", "amount": "-0.5"}],
            "system_labels": {"k": [1, 2]},
            "usage_start_time": "2024-03-01 05:00:00 UTC",
            "sequence": 9,
        },
        # A string for a JSON column is JSON text, parsed on load.
        {
            "billing_account_id": "acct-9",
            "usage_date": "2024-03-02",
            "cost": "1",
            "sequence": 10,
            "system_labels": '{"tier": "standard"}',
        },
    ]
    path.write_text("".join(json.dumps(document) + "\n" for document in documents))
    ref = TableRef(dataset, "ndjson")
    result = warehouse.load_file(str(path), ref, file_format=FileFormat.NDJSON, spec=BILLING_SPEC)
    assert result.rows_affected == 2
    rows = warehouse.query(
        f"SELECT cost, service, labels, system_labels, usage_start_time, "
        f"(SELECT SUM(c.amount) FROM UNNEST(credits) AS c) AS credit FROM {ref} ORDER BY sequence"
    ).rows
    assert rows == [
        {
            "cost": BIG,
            "service": {"id": "svc", "description": "Svc"},
            "labels": [{"key": "team", "value": "ops"}],
            "system_labels": {"k": [1, 2]},
            "usage_start_time": dt.datetime(2024, 3, 1, 5, tzinfo=UTC),
            "credit": Decimal("-0.5"),
        },
        {
            "cost": Decimal("1"),
            "service": None,
            "labels": [],
            "system_labels": {"tier": "standard"},
            "usage_start_time": None,
            "credit": None,
        },
    ]
    assert (
        warehouse.load_file(
            str(path), ref, file_format=FileFormat.NDJSON, write_mode=WriteMode.TRUNCATE
        ).rows_affected
        == 2
    )
    assert count(warehouse, ref) == 2


def test_load_parquet(warehouse: Warehouse, dataset: str, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    write_parquet(
        path,
        {
            "name": ("string", ["a", "b", "c"]),
            "qty": ("int64", [1, 2, 3_000_000_000]),
            "price": ("double", [0.5, 1.25, -2.0]),
            "day": ("date", [DAY_1, DAY_2, dt.date(1999, 12, 31)]),
            "ok": ("bool", [True, False, True]),
        },
    )
    spec = TableSpec(
        schema=(
            Field("name", "STRING"),
            Field("qty", "INT64"),
            Field("price", "FLOAT64"),
            Field("day", "DATE"),
            Field("ok", "BOOL"),
        ),
        partition_field="day",
    )
    ref = TableRef(dataset, "parquet")
    assert warehouse.load_file(str(path), ref, file_format=FileFormat.PARQUET, spec=spec).rows_affected == 3
    assert warehouse.load_file(str(path), ref, file_format=FileFormat.PARQUET).rows_affected == 3
    rows = warehouse.query(f"SELECT * FROM {ref} WHERE name = 'c' LIMIT 1").rows
    assert rows == [
        {"name": "c", "qty": 3_000_000_000, "price": -2.0, "day": dt.date(1999, 12, 31), "ok": True}
    ]
    assert count(warehouse, ref) == 6
    assert warehouse.describe_table(ref).partition_field == "day"


def test_load_missing_file_fails(warehouse: Warehouse, dataset: str, tmp_path: Path) -> None:
    with pytest.raises(WarehouseError) as raised:
        warehouse.load_file(
            str(tmp_path / "absent.csv"), TableRef(dataset, "t"), file_format=FileFormat.CSV, spec=LOAD_SPEC
        )
    assert not raised.value.retryable
    assert warehouse.table_exists(TableRef(dataset, "t")) is False


def test_load_from_gcs_uri(warehouse: Warehouse, dataset: str, request: pytest.FixtureRequest) -> None:
    ref = TableRef(dataset, "from_gcs")
    spec = TableSpec(schema=(Field("name", "STRING"), Field("qty", "INT64")))
    uri = f"gs://contract-bucket/{dataset}/rows.csv"
    if warehouse.kind == "duckdb":
        with pytest.raises(WarehouseError, match="gs:// loads need the bigquery backend") as raised:
            warehouse.load_file(uri, ref, file_format=FileFormat.CSV, spec=spec)
        assert not raised.value.retryable
        assert warehouse.table_exists(ref) is False
        return
    # The emulator serves gs://BUCKET/PATH from a folder in its data dir.
    gcs_dir: Path = request.getfixturevalue("bq_emulator_gcs")
    local = gcs_dir / "contract-bucket" / dataset / "rows.csv"
    local.parent.mkdir(parents=True)
    local.write_text("name,qty\na,1\nb,2\n")
    assert warehouse.load_file(uri, ref, file_format=FileFormat.CSV, spec=spec).rows_affected == 2
    assert warehouse.query(f"SELECT SUM(qty) AS total FROM {ref}").rows == [{"total": 3}]


# --- errors -------------------------------------------------------------------------------------------
def test_missing_table_is_not_found(warehouse: Warehouse, dataset: str) -> None:
    missing = TableRef(dataset, "nope")
    with pytest.raises(NotFoundError):
        warehouse.query(f"SELECT * FROM {missing}")
    with pytest.raises(NotFoundError):
        warehouse.describe_table(missing)
    with pytest.raises(NotFoundError):
        warehouse.insert_rows(missing, [{"x": 1}])


def test_bad_sql_is_not_retryable_and_hides_the_sql(warehouse: Warehouse, dataset: str) -> None:
    sql = f"SELECT secret_column_xyz FROM {dataset}.nope WHERE FROM"
    with pytest.raises(WarehouseError) as raised:
        warehouse.query(sql)
    assert not raised.value.retryable
    assert sql not in str(raised.value)
    assert "secret_column_xyz" not in str(raised.value)


def test_unknown_column_is_not_retryable(warehouse: Warehouse, billing: TableRef) -> None:
    sql = f"SELECT no_such_column FROM {billing}"
    with pytest.raises(WarehouseError) as raised:
        warehouse.query(sql)
    assert not raised.value.retryable
    assert not isinstance(raised.value, NotFoundError)
    assert sql not in str(raised.value)


@pytest.mark.parametrize(
    "bad_row",
    [
        pytest.param(
            {"billing_account_id": "acct-x", "usage_date": "2024-03-01", "sequence": "not-a-number"},
            id="bad-int",
        ),
        pytest.param(
            {"billing_account_id": "acct-x", "usage_date": "2024-03-01", "unknown_field": 1},
            id="unknown-field",
        ),
        pytest.param({"billing_account_id": "acct-x", "sequence": 5}, id="missing-required"),
        pytest.param(
            {"billing_account_id": "acct-x", "usage_date": "2024-03-01", "service": {"id": "s", "zone": "z"}},
            id="unknown-nested-field",
        ),
        pytest.param(
            {"billing_account_id": "acct-x", "usage_date": "2024-03-01", "service": {"description": "no id"}},
            id="missing-nested-required",
        ),
        pytest.param(
            {"billing_account_id": "acct-x", "usage_date": "2024-03-01", "system_labels": "{not json"},
            id="invalid-json",
        ),
        pytest.param(
            {"billing_account_id": "acct-x", "usage_date": "2024-03-01", "labels": "team"}, id="not-a-list"
        ),
    ],
)
def test_bad_row_inserts_nothing(warehouse: Warehouse, billing: TableRef, bad_row: dict[str, Any]) -> None:
    good = {**billing_rows()[0], "sequence": 100}
    with pytest.raises(WarehouseError):
        warehouse.insert_rows(billing, [good, bad_row])
    assert count(warehouse, billing) == 3


# --- DuckDB file mode -----------------------------------------------------------------------------------
def _run_other_process(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=REPO,
        check=False,
    )


def test_duckdb_file_two_objects_alternate(tmp_path: Path) -> None:
    path = str(tmp_path / "warehouse.duckdb")
    first = DuckDBWarehouse(path, lock_timeout_s=5)
    second = DuckDBWarehouse(path, lock_timeout_s=5)
    ref = TableRef("shared", "events")
    first.create_dataset("shared")
    second.create_table(ref, TableSpec(schema=(Field("n", "INT64"),), partition_field=None))
    first.insert_rows(ref, [{"n": 1}])
    second.insert_rows(ref, [{"n": 2}])
    assert first.query(f"SELECT SUM(n) AS total FROM {ref}").rows == [{"total": 3}]
    assert second.describe_table(ref).num_rows == 2

    # Another process can open the file between operations: no connection is left holding the lock.
    other = _run_other_process(
        "from convergence.warehouse.duckdb import DuckDBWarehouse\n"
        "from convergence.warehouse.base import TableRef\n"
        f"w = DuckDBWarehouse({path!r}, lock_timeout_s=2)\n"
        "w.insert_rows(TableRef('shared', 'events'), [{'n': 4}])\n"
        "print(w.query('SELECT SUM(n) AS total FROM shared.events').rows[0]['total'])\n"
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "7"
    assert first.query(f"SELECT COUNT(*) AS n FROM {ref}").rows == [{"n": 3}]


def test_duckdb_file_session_holds_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "warehouse.duckdb")
    holder = DuckDBWarehouse(path, lock_timeout_s=5)
    holder.create_dataset("locked")
    probe = (
        "import time\n"
        "from convergence.warehouse.duckdb import DuckDBWarehouse\n"
        "from convergence.warehouse.base import WarehouseError\n"
        f"w = DuckDBWarehouse({path!r}, lock_timeout_s=0.5)\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    print('ok', w.list_datasets())\n"
        "except WarehouseError as exc:\n"
        "    print('error', exc.retryable, round(time.monotonic() - started, 1))\n"
    )
    with holder.session():
        holder.create_table(TableRef("locked", "t"), TableSpec(schema=(Field("n", "INT64"),)))
        blocked = _run_other_process(probe)
        assert holder.list_tables("locked") == ["t"]
    assert blocked.returncode == 0, blocked.stderr
    outcome, retryable, _waited = blocked.stdout.split()
    assert (outcome, retryable) == ("error", "True")  # gave up after its own lock timeout, retryable
    released = _run_other_process(probe)
    assert released.stdout.strip() == "ok ['locked']"


def test_duckdb_constructor_does_not_connect(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "warehouse.duckdb"
    embedded = DuckDBWarehouse(str(path))
    assert not path.exists()
    embedded.ping()
    assert path.exists()


# --- BigQuery jobs ------------------------------------------------------------------------------------
def _emulator_client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )


@pytest.mark.bigquery
def test_bigquery_jobs_carry_labels_and_byte_cap(bq_emulator: str) -> None:
    from convergence.warehouse.bigquery import BigQueryWarehouse

    capped = BigQueryWarehouse(
        project="test-project", api_endpoint=bq_emulator, max_bytes_billed=50 * 1024**2
    )
    marker = unique("labels")
    capped.query(
        f"SELECT '{marker}' AS marker",
        labels=JobLabels(tenant="Acme Corp", run="Run:2024-03-01/" + "x" * 80, step="extract"),
    )
    client = _emulator_client(bq_emulator)
    job = next(job for job in client.list_jobs(max_results=50) if marker in (getattr(job, "query", "") or ""))
    assert job.labels == {
        "tenant": "acme_corp",
        "run": ("run_2024-03-01_" + "x" * 80)[:63],
        "step": "extract",
    }
    assert job.maximum_bytes_billed == 50 * 1024**2
    assert job.default_dataset is None
    capped.close()
    client.close()


@pytest.mark.bigquery
@pytest.mark.emulator_gap(
    reason="local-bigquery does not enforce maximum_bytes_billed and reports 0 bytes "
    "processed; BigQuery fails the job with bytesBilledLimitExceeded"
)
def test_bigquery_byte_cap_stops_queries(bq_emulator: str, bigquery_warehouse: Warehouse) -> None:
    from convergence.warehouse.bigquery import BigQueryWarehouse

    dataset = unique("cap")
    bigquery_warehouse.create_dataset(dataset)
    try:
        ref = TableRef(dataset, "numbers")
        bigquery_warehouse.create_table(ref, TableSpec(schema=(Field("n", "INT64"),)))
        bigquery_warehouse.insert_rows(ref, [{"n": n} for n in range(100)])
        capped = BigQueryWarehouse(project="test-project", api_endpoint=bq_emulator, max_bytes_billed=1)
        # On BigQuery this raises WarehouseError(retryable=False). The emulator runs it.
        result = capped.query(f"SELECT SUM(n) AS total FROM {ref}")
        assert result.rows == [{"total": 4950}]
        assert result.bytes_processed == 0
        capped.close()
    finally:
        bigquery_warehouse.drop_dataset(dataset, delete_contents=True)


# --- a tiny Parquet writer --------------------------------------------------------------------------------
# The project venv has no pyarrow, and writing the file with DuckDB would test DuckDB against itself.
# This writes one row group of PLAIN-encoded, uncompressed REQUIRED columns: enough for the readers.
_PHYSICAL = {"bool": (0, None), "int64": (2, None), "double": (5, None), "string": (6, 0), "date": (1, 6)}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _thrift(*fields: tuple[int, str, Any]) -> bytes:
    """A Thrift compact-protocol struct from (field id, kind, value); None values are omitted."""
    out = bytearray()
    last = 0
    kinds = {"i32": 5, "i64": 6, "binary": 8, "list": 9, "struct": 12}
    for field_id, kind, value in fields:
        if value is None:
            continue
        out.append(((field_id - last) << 4) | kinds[kind])
        last = field_id
        if kind in ("i32", "i64"):
            out += _varint(_zigzag(value))
        elif kind == "binary":
            out += _varint(len(value)) + value
        elif kind == "struct":
            out += value
        else:
            element_kind, items = value
            out.append((len(items) << 4) | kinds[element_kind])
            for item in items:
                if element_kind == "i32":
                    out += _varint(_zigzag(item))
                elif element_kind == "binary":
                    out += _varint(len(item)) + item
                else:
                    out += item
    out.append(0)
    return bytes(out)


def _plain(kind: str, values: list[Any]) -> bytes:
    if kind == "bool":
        packed = bytearray((len(values) + 7) // 8)
        for index, value in enumerate(values):
            if value:
                packed[index // 8] |= 1 << (index % 8)
        return bytes(packed)
    if kind == "int64":
        return b"".join(struct.pack("<q", value) for value in values)
    if kind == "double":
        return b"".join(struct.pack("<d", value) for value in values)
    if kind == "date":
        return b"".join(struct.pack("<i", (value - dt.date(1970, 1, 1)).days) for value in values)
    return b"".join(struct.pack("<I", len(value.encode())) + value.encode() for value in values)


def write_parquet(path: Path, columns: dict[str, tuple[str, list[Any]]]) -> None:
    rows = len(next(iter(columns.values()))[1])
    body = bytearray(b"PAR1")
    chunks = []
    for name, (kind, values) in columns.items():
        data = _plain(kind, values)
        header = _thrift(
            (1, "i32", 0),
            (2, "i32", len(data)),
            (3, "i32", len(data)),
            (5, "struct", _thrift((1, "i32", rows), (2, "i32", 0), (3, "i32", 3), (4, "i32", 3))),
        )
        offset = len(body)
        body += header + data
        physical, _ = _PHYSICAL[kind]
        metadata = _thrift(
            (1, "i32", physical),
            (2, "list", ("i32", [0])),
            (3, "list", ("binary", [name.encode()])),
            (4, "i32", 0),
            (5, "i64", rows),
            (6, "i64", len(header) + len(data)),
            (7, "i64", len(header) + len(data)),
            (9, "i64", offset),
        )
        chunks.append(_thrift((2, "i64", offset), (3, "struct", metadata)))
    schema = [_thrift((4, "binary", b"schema"), (5, "i32", len(columns)))]
    for name, (kind, _) in columns.items():
        physical, converted = _PHYSICAL[kind]
        schema.append(
            _thrift((1, "i32", physical), (3, "i32", 0), (4, "binary", name.encode()), (6, "i32", converted))
        )
    row_group = _thrift((1, "list", ("struct", chunks)), (2, "i64", len(body) - 4), (3, "i64", rows))
    footer = _thrift(
        (1, "i32", 1), (2, "list", ("struct", schema)), (3, "i64", rows), (4, "list", ("struct", [row_group]))
    )
    body += footer + struct.pack("<I", len(footer)) + b"PAR1"
    path.write_bytes(bytes(body))


def test_countif_is_zero_over_no_rows_and_null_conditions(warehouse: Warehouse, billing: TableRef) -> None:
    rows = warehouse.query(
        f"SELECT COUNTIF(sequence > 100) AS none_true, "
        f"(SELECT COUNTIF(sequence > 0) FROM {billing} WHERE FALSE) AS no_rows, "
        f"COUNTIF(CAST(NULL AS BOOL)) AS all_null, COUNTIF(sequence > 1) AS some "
        f"FROM {billing}"
    ).rows
    assert rows == [{"none_true": 0, "no_rows": 0, "all_null": 0, "some": 2}]
