"""gcp.bq_etl, warehouse.load_file and dq.checks, each run through the real engine on DuckDB."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from convergence.warehouse import Field, TableRef, TableSpec
from pipelines.engine import DQRecord, StepStatus
from pipelines.loader import Pipeline
from tests import engine_fixtures
from tests.engine_fixtures import TENANT, make_configs, run_pipeline, write_pipeline

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)

RAW_SCHEMA = (
    Field("usage_date", "DATE"),
    Field("account", "STRING"),
    Field("cost", "NUMERIC"),
    Field("billing_period", "STRING"),
)
RAW_ROWS = [
    {"usage_date": "2024-03-01", "account": "a", "cost": "1.50", "billing_period": "2024-03"},
    {"usage_date": "2024-03-01", "account": "a", "cost": "2.25", "billing_period": "2024-03"},
    {"usage_date": "2024-03-01", "account": "b", "cost": "4.00", "billing_period": "2024-03"},
    {"usage_date": "2024-03-02", "account": "a", "cost": "10.00", "billing_period": "2024-03"},
    {"usage_date": "2024-03-02", "account": "c", "cost": "0.25", "billing_period": "2024-03"},
    {"usage_date": "2024-02-29", "account": "b", "cost": "7.00", "billing_period": "2024-02"},
]
DAILY_SCHEMA = [
    {"name": "usage_date", "type": "DATE", "mode": "REQUIRED"},
    {"name": "account", "type": "STRING"},
    {"name": "cost", "type": "NUMERIC"},
]
DAILY_SQL = (
    "SELECT usage_date, account, SUM(cost) AS cost FROM {tenant_dataset}.raw_usage "
    "WHERE usage_date = @date GROUP BY usage_date, account"
)


# The fixtures: the tenant's dataset and the DQ results a run records.
dataset = engine_fixtures.dataset
dq_records = engine_fixtures.dq_records


@pytest.fixture
def configs(settings: Any, tmp_path: Path) -> Path:
    return make_configs(settings, tmp_path, {"daily_cost": DAILY_SCHEMA})


@pytest.fixture
def raw_usage(warehouse: Any, dataset: str) -> TableRef:
    ref = TableRef(dataset, "raw_usage")
    warehouse.create_table(ref, TableSpec(schema=RAW_SCHEMA))
    assert warehouse.insert_rows(ref, RAW_ROWS) == 6
    return ref


def _pipeline(configs: Path, text: str, name: str = "gcp/test/example") -> Pipeline:
    return write_pipeline(configs, text, name)


def _daily(warehouse: Any, dataset: str, table: str = "daily_cost") -> dict[tuple[str, str], Decimal]:
    rows = warehouse.query(f"SELECT usage_date, account, cost FROM {dataset}.{table}").rows
    totals: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        key = (row["usage_date"].isoformat(), row["account"])
        totals[key] = totals.get(key, Decimal(0)) + row["cost"]
    return totals


def _summary(warehouse: Any, dataset: str, table: str = "daily_cost") -> list[tuple[str, int, Decimal]]:
    rows = warehouse.query(
        f"SELECT usage_date, COUNT(*) AS n, SUM(cost) AS total FROM {dataset}.{table} "
        "GROUP BY usage_date ORDER BY usage_date"
    ).rows
    return [(row["usage_date"].isoformat(), row["n"], row["total"]) for row in rows]


def _etl(write_mode: str, extra: str = "") -> str:
    return f"""
description: Daily cost per account
parameters:
  date: {{type: date, required: true}}
steps:
  - step_id: daily
    ps_type: gcp.bq_etl
    sql: "{DAILY_SQL}"
    destination: {{dataset_type: tenant_dataset, table: daily_cost, write_mode: {write_mode}{extra}}}
"""


class RecordingWarehouse:
    """Passes every call to the real warehouse and keeps the SQL text and parameters it was given and
    the SQL the backend reports it sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sql: list[str] = []
        self.params: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def query(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        result = self.inner.query(sql, params, **kwargs)
        self.sql += [sql, result.sql]
        self.params.append(dict(params or {}))
        return result

    def query_to_table(self, sql: str, destination: TableRef, **kwargs: Any) -> Any:
        result = self.inner.query_to_table(sql, destination, **kwargs)
        self.sql += [sql, kwargs.get("replace_predicate") or "", result.sql]
        self.params.append(dict(kwargs.get("params") or {}))
        return result


# --- gcp.bq_etl ----------------------------------------------------------------------------------------
def test_etl_append_adds_rows_each_run(configs, warehouse, dataset, raw_usage) -> None:
    pipeline = _pipeline(configs, _etl("append"))
    first = run_pipeline(pipeline, date="2024-03-01")
    assert first.status == StepStatus.COMPLETED
    assert first.steps[0].result.rows_affected == 2
    assert _daily(warehouse, dataset) == {
        ("2024-03-01", "a"): Decimal("3.75"),
        ("2024-03-01", "b"): Decimal("4"),
    }
    second = run_pipeline(pipeline, date="2024-03-01")
    assert second.steps[0].result.rows_affected == 2
    assert _summary(warehouse, dataset) == [("2024-03-01", 4, Decimal("15.5"))]


def test_etl_truncate_replaces_the_whole_table(configs, warehouse, dataset, raw_usage) -> None:
    pipeline = _pipeline(configs, _etl("truncate"))
    assert run_pipeline(pipeline, date="2024-03-01").steps[0].result.rows_affected == 2
    outcome = run_pipeline(pipeline, date="2024-03-02")
    assert outcome.status == StepStatus.COMPLETED
    assert outcome.steps[0].result.rows_affected == 2
    assert _daily(warehouse, dataset) == {
        ("2024-03-02", "a"): Decimal("10"),
        ("2024-03-02", "c"): Decimal("0.25"),
    }


def test_replace_partition_rerun_leaves_counts_and_sums_unchanged(
    configs, warehouse, dataset, raw_usage
) -> None:
    pipeline = _pipeline(
        configs,
        _etl("replace_partition", ", partition_field: usage_date, schema_file: schemas/daily_cost.json"),
    )
    assert run_pipeline(pipeline, date="2024-03-01").steps[0].result.rows_affected == 2
    assert run_pipeline(pipeline, date="2024-03-02").steps[0].result.rows_affected == 2
    before = _summary(warehouse, dataset)
    assert before == [("2024-03-01", 2, Decimal("7.75")), ("2024-03-02", 2, Decimal("10.25"))]

    again = run_pipeline(pipeline, date="2024-03-01")
    assert again.status == StepStatus.COMPLETED
    assert again.steps[0].result.rows_affected == 2
    assert _summary(warehouse, dataset) == before
    # The table was created from the schema file, partitioned on the declared field.
    info = warehouse.describe_table(TableRef(dataset, "daily_cost"))
    assert info.partition_field == "usage_date"
    assert [field.name for field in info.schema] == ["usage_date", "account", "cost"]


def test_replace_partition_replaces_only_the_runs_day(configs, warehouse, dataset, raw_usage) -> None:
    pipeline = _pipeline(configs, _etl("replace_partition", ", partition_field: usage_date"))
    run_pipeline(pipeline, date="2024-03-01")
    run_pipeline(pipeline, date="2024-03-02")
    warehouse.query(f"DELETE FROM {dataset}.raw_usage WHERE usage_date = '2024-03-01' AND account = 'b'")
    outcome = run_pipeline(pipeline, date="2024-03-01")
    assert outcome.steps[0].result.rows_affected == 1
    assert _daily(warehouse, dataset) == {
        ("2024-03-01", "a"): Decimal("3.75"),
        ("2024-03-02", "a"): Decimal("10"),
        ("2024-03-02", "c"): Decimal("0.25"),
    }


def test_replace_partition_with_explicit_predicate_for_a_billing_period(
    configs, warehouse, dataset, raw_usage
) -> None:
    pipeline = _pipeline(
        configs,
        """
description: Monthly cost per account
parameters:
  period: {type: string, required: true, pattern: "^[0-9]{4}-[0-9]{2}$"}
steps:
  - step_id: monthly
    ps_type: gcp.bq_etl
    sql: >-
      SELECT billing_period, account, SUM(cost) AS cost FROM {tenant_dataset}.raw_usage
      WHERE billing_period = @period GROUP BY billing_period, account
    destination:
      dataset_type: tenant_dataset
      table: monthly_cost
      write_mode: replace_partition
      replace_predicate: billing_period = @period
""",
    )
    assert run_pipeline(pipeline, period="2024-03").steps[0].result.rows_affected == 3
    assert run_pipeline(pipeline, period="2024-02").steps[0].result.rows_affected == 1
    assert run_pipeline(pipeline, period="2024-03").steps[0].result.rows_affected == 3
    rows = warehouse.query(
        f"SELECT billing_period, COUNT(*) AS n, SUM(cost) AS total FROM {dataset}.monthly_cost "
        "GROUP BY billing_period ORDER BY billing_period"
    ).rows
    assert [(row["billing_period"], row["n"], row["total"]) for row in rows] == [
        ("2024-02", 1, Decimal("7")),
        ("2024-03", 3, Decimal("18")),
    ]


def test_merge_upserts_on_the_declared_keys(configs, warehouse, dataset, raw_usage) -> None:
    pipeline = _pipeline(
        configs,
        """
description: Latest cost per account
parameters:
  date: {type: date, required: true}
steps:
  - step_id: latest
    ps_type: gcp.bq_etl
    sql: >-
      SELECT account, SUM(cost) AS cost, MAX(usage_date) AS last_seen FROM {tenant_dataset}.raw_usage
      WHERE usage_date = @date GROUP BY account
    destination: {dataset_type: tenant_dataset, table: accounts, write_mode: merge, merge_keys: [account]}
""",
    )
    assert run_pipeline(pipeline, date="2024-03-01").steps[0].result.rows_affected == 2
    outcome = run_pipeline(pipeline, date="2024-03-02")
    assert outcome.status == StepStatus.COMPLETED
    assert outcome.steps[0].result.rows_affected == 2  # a updated, c inserted
    rows = warehouse.query(f"SELECT account, cost, last_seen FROM {dataset}.accounts ORDER BY account").rows
    assert [(row["account"], row["cost"], row["last_seen"]) for row in rows] == [
        ("a", Decimal("10"), D2),
        ("b", Decimal("4"), D1),
        ("c", Decimal("0.25"), D2),
    ]


def test_string_parameter_reaches_the_warehouse_only_as_a_bound_value(
    configs, warehouse, dataset, raw_usage
) -> None:
    hostile = "x' OR '1'='1"
    warehouse.insert_rows(raw_usage, [{"usage_date": "2024-03-01", "account": hostile, "cost": "5"}])
    pipeline = _pipeline(
        configs,
        """
description: One account's rows
parameters:
  account: {type: string, required: true}
steps:
  - step_id: pick
    ps_type: gcp.bq_etl
    sql: "SELECT account, cost FROM {tenant_dataset}.raw_usage WHERE account = @account"
    destination: {dataset_type: tenant_dataset, table: picked, write_mode: truncate}
""",
    )
    recorder = RecordingWarehouse(warehouse)
    outcome = run_pipeline(pipeline, warehouse=recorder, account=hostile)
    assert outcome.status == StepStatus.COMPLETED
    literal = warehouse.query(
        f'''SELECT COUNT(*) AS n FROM {dataset}.raw_usage WHERE account = "x' OR '1'='1"'''
    ).rows[0]["n"]
    assert literal == 1
    assert outcome.steps[0].result.rows_affected == literal
    assert recorder.sql and all(hostile not in text and "OR '1'" not in text for text in recorder.sql)
    assert [{name: param.value for name, param in params.items()} for params in recorder.params] == [
        {"account": hostile}
    ]
    assert warehouse.query(f"SELECT account FROM {dataset}.picked").rows == [{"account": hostile}]


def test_sql_naming_the_validation_dataset_is_refused_at_run_time(
    configs, warehouse, dataset, raw_usage
) -> None:
    pipeline = _pipeline(
        configs,
        """
description: Validates against the placeholder dataset, which is never a real tenant's
steps:
  - step_id: sneaky
    ps_type: gcp.bq_etl
    sql: SELECT 1 AS x FROM _validation_tenant_local.raw_usage
    destination: {dataset_type: tenant_dataset, table: out, write_mode: append}
""",
    )
    outcome = run_pipeline(pipeline)
    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].error == (
        f"SQL refused: SQL references dataset '_validation_tenant_local' (only {dataset} allowed)"
    )
    assert not warehouse.table_exists(TableRef(dataset, "out"))


def test_warehouse_error_fails_the_step(configs, warehouse, dataset) -> None:
    pipeline = _pipeline(configs, _etl("append"))
    outcome = run_pipeline(pipeline, date="2024-03-01")
    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].attempts == 1
    assert "raw_usage" in outcome.steps[0].error
    assert not warehouse.table_exists(TableRef(dataset, "daily_cost"))


# --- warehouse.load_file -------------------------------------------------------------------------------
@pytest.fixture
def sources(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "sources"
    root.mkdir()
    settings.SOURCE_FILE_ROOT = root
    return root


def _load(uri: str, file_format: str, write_mode: str = "append", extra: str = "") -> str:
    return f"""
description: Load a file
steps:
  - step_id: load
    ps_type: warehouse.load_file
    uri: "{uri}"
    format: {file_format}
    destination: {{dataset_type: tenant_dataset, table: loaded, write_mode: {write_mode}}}
{extra}"""


def _loaded(warehouse: Any, dataset: str) -> list[dict[str, Any]]:
    return warehouse.query(f"SELECT * FROM {dataset}.loaded ORDER BY account").rows


def test_load_csv_with_schema_under_a_tenant_folder(configs, sources, warehouse, dataset) -> None:
    (sources / TENANT).mkdir()
    (sources / TENANT / "usage.csv").write_text(
        "usage_date,account,cost\n2024-03-01,a,1.50\n2024-03-01,b,2.25\n2024-03-02,c,0.25\n"
    )
    pipeline = _pipeline(
        configs, _load("{tenant_id}/usage.csv", "csv", extra="    schema_file: schemas/daily_cost.json\n")
    )
    outcome = run_pipeline(pipeline)
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert outcome.steps[0].result.rows_affected == 3
    assert _loaded(warehouse, dataset) == [
        {"usage_date": D1, "account": "a", "cost": Decimal("1.5")},
        {"usage_date": D1, "account": "b", "cost": Decimal("2.25")},
        {"usage_date": D2, "account": "c", "cost": Decimal("0.25")},
    ]


def test_load_ndjson_truncate_keeps_one_copy(configs, sources, warehouse, dataset) -> None:
    path = sources / "usage.ndjson"
    path.write_text('{"account": "a", "units": 3}\n{"account": "b", "units": 4}\n')
    pipeline = _pipeline(configs, _load(f"file://{path}", "ndjson", write_mode="truncate"))
    assert run_pipeline(pipeline).steps[0].result.rows_affected == 2
    outcome = run_pipeline(pipeline)
    assert outcome.steps[0].result.rows_affected == 2
    assert _loaded(warehouse, dataset) == [{"account": "a", "units": 3}, {"account": "b", "units": 4}]


def test_load_parquet(configs, sources, warehouse, dataset) -> None:
    # No Parquet writer is installed besides DuckDB itself (pyarrow is not a dependency).
    import duckdb  # noqa: TID251 - writes the test's input file only

    path = sources / "usage.parquet"
    connection = duckdb.connect()
    connection.execute(
        "COPY (SELECT * FROM (VALUES ('a', 1.5::DOUBLE), ('b', 2.0::DOUBLE), ('c', 0.5::DOUBLE)) "
        f"AS t(account, cost)) TO '{path}' (FORMAT parquet)"
    )
    connection.close()
    pipeline = _pipeline(configs, _load("usage.parquet", "parquet"))
    outcome = run_pipeline(pipeline)
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert outcome.steps[0].result.rows_affected == 3
    assert _loaded(warehouse, dataset) == [
        {"account": "a", "cost": 1.5},
        {"account": "b", "cost": 2.0},
        {"account": "c", "cost": 0.5},
    ]


@pytest.mark.parametrize("how", ["absolute", "dotdot", "file_uri", "symlink"])
def test_load_refuses_files_outside_the_source_root(
    configs, sources, warehouse, dataset, tmp_path, how
) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("account\nroot\n")
    uri = {
        "absolute": str(outside),
        "dotdot": "../secret.csv",
        "file_uri": f"file://{outside}",
        "symlink": "link.csv",
    }[how]
    (sources / "link.csv").symlink_to(outside)
    outcome = run_pipeline(_pipeline(configs, _load(uri, "csv")))
    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].error == "source file is outside the allowed source folder (SOURCE_FILE_ROOT)"
    assert not warehouse.table_exists(TableRef(dataset, "loaded"))


def test_load_missing_file_fails_without_a_table(configs, sources, warehouse, dataset) -> None:
    outcome = run_pipeline(_pipeline(configs, _load("nope.csv", "csv")))
    assert outcome.status == StepStatus.FAILED
    assert outcome.steps[0].error == "source file not found"
    assert not warehouse.table_exists(TableRef(dataset, "loaded"))


# --- dq.checks ----------------------------------------------------------------------------------------
@pytest.fixture
def daily(warehouse: Any, dataset: str) -> TableRef:
    ref = TableRef(dataset, "daily")
    warehouse.create_table(
        ref,
        TableSpec(
            schema=(
                Field("usage_date", "DATE"),
                Field("account", "STRING"),
                Field("cost", "NUMERIC"),
                Field("loaded_at", "TIMESTAMP"),
            )
        ),
    )
    loaded_at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    rows = [
        ("2024-03-01", "a", "1.00"),
        ("2024-03-01", "b", "2.00"),
        ("2024-03-01", "b", "6.00"),
        ("2024-03-02", "c", "8.00"),
        ("2024-03-02", None, "0.50"),
    ]
    warehouse.insert_rows(
        ref, [{"usage_date": d, "account": a, "cost": c, "loaded_at": loaded_at} for d, a, c in rows]
    )
    return ref


def _dq(checks: str, extra: str = "", dependant: bool = False) -> str:
    after = (
        "  - {step_id: publish, ps_type: gcp.bq_etl, depends_on: [quality], "
        'sql: "SELECT 1 AS x",\n'
        "     destination: {dataset_type: tenant_dataset, table: published, write_mode: append}}\n"
        if dependant
        else ""
    )
    return f"""
description: Quality checks
parameters:
  date: {{type: date}}
steps:
  - step_id: quality
    ps_type: dq.checks
    table: {{dataset_type: tenant_dataset, table: daily}}
{extra}    checks:
{checks}{after}"""


def _results(records: list[DQRecord]) -> list[tuple[str, str, str, str, str]]:
    return [(r.check, r.status, r.severity, r.observed, r.expected) for r in records]


def test_every_check_type_passing(configs, warehouse, dataset, daily, dq_records) -> None:
    checks = """\
      - {check: not_null, column: usage_date}
      - {check: unique, columns: [usage_date, account, cost]}
      - {check: accepted_values, column: account, values: [a, b, c]}
      - {check: row_count, min: 1, max: 5}
      - {check: expression, predicate: "cost >= 0"}
      - {check: freshness, column: loaded_at, max_age_hours: 24}
      - {check: custom, sql: "SELECT * FROM {tenant_dataset}.daily WHERE cost > 100"}
"""
    outcome = run_pipeline(_pipeline(configs, _dq(checks)))
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert outcome.steps[0].result.outputs == {"checks": 7, "warned": []}
    table = f"{dataset}.daily"
    assert [(r.check, r.table, r.status, r.observed, r.expected) for r in dq_records] == [
        ("not_null", table, "PASS", "0", "0"),
        ("unique", table, "PASS", "0", "0"),
        ("accepted_values", table, "PASS", "0", "0"),
        ("row_count", table, "PASS", "5", "between 1 and 5"),
        ("expression", table, "PASS", "0", "0"),
        ("freshness", table, "PASS", "2.0h", "<= 24h"),
        ("custom", table, "PASS", "0", "0"),
    ]
    assert {r.step_id for r in dq_records} == {"quality"}


def test_every_check_type_failing_fails_the_step_and_skips_dependants(
    configs, warehouse, dataset, daily, dq_records
) -> None:
    checks = """\
      - {check: not_null, column: account}
      - {check: unique, columns: [usage_date, account], name: one_row_per_account_day}
      - {check: accepted_values, column: account, values: [a, b]}
      - {check: row_count, min: 10}
      - {check: expression, predicate: "cost < 5"}
      - {check: freshness, column: loaded_at, max_age_hours: 1}
      - {check: custom, sql: "SELECT * FROM {tenant_dataset}.daily WHERE cost > 1.5"}
"""
    outcome = run_pipeline(_pipeline(configs, _dq(checks, dependant=True)))
    assert outcome.status == StepStatus.FAILED
    quality, publish = outcome.steps
    assert quality.status == StepStatus.FAILED
    assert quality.attempts == 1
    assert quality.error == (
        "data quality: 7 check(s) failed: not_null, one_row_per_account_day, accepted_values, row_count, "
        "expression, freshness, custom"
    )
    assert publish.status == StepStatus.SKIPPED
    assert not warehouse.table_exists(TableRef(dataset, "published"))
    assert _results(dq_records) == [
        ("not_null", "FAIL", "error", "1", "0"),
        ("one_row_per_account_day", "FAIL", "error", "1", "0"),
        ("accepted_values", "FAIL", "error", "1", "0"),
        ("row_count", "FAIL", "error", "5", ">= 10"),
        ("expression", "FAIL", "error", "2", "0"),
        ("freshness", "FAIL", "error", "2.0h", "<= 1h"),
        ("custom", "FAIL", "error", "3", "0"),
    ]


def test_warn_severity_records_warn_and_the_step_completes(
    configs, warehouse, dataset, daily, dq_records
) -> None:
    checks = """\
      - {check: row_count, max: 2, severity: warn}
      - {check: not_null, column: usage_date}
"""
    outcome = run_pipeline(_pipeline(configs, _dq(checks, dependant=True)))
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert [step.status for step in outcome.steps] == [StepStatus.COMPLETED, StepStatus.COMPLETED]
    assert outcome.steps[0].result.outputs == {"checks": 2, "warned": ["row_count"]}
    assert _results(dq_records) == [
        ("row_count", "WARN", "warn", "5", "<= 2"),
        ("not_null", "PASS", "error", "0", "0"),
    ]


def test_where_limits_checks_with_a_bound_parameter(configs, warehouse, dataset, daily, dq_records) -> None:
    checks = """\
      - {check: row_count, min: 3, max: 3}
      - {check: not_null, column: account}
      - {check: freshness, column: usage_date, max_age_hours: 1, severity: warn}
"""
    recorder = RecordingWarehouse(warehouse)
    pipeline = _pipeline(configs, _dq(checks, extra="    where: usage_date = @date\n"))
    outcome = run_pipeline(pipeline, warehouse=recorder, date="2024-03-01")
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    assert _results(dq_records)[:2] == [
        ("row_count", "PASS", "error", "3", "between 3 and 3"),
        ("not_null", "PASS", "error", "0", "0"),
    ]
    assert dq_records[2].status == "WARN"
    assert dq_records[2].message == "latest usage_date: 2024-03-01T00:00:00+00:00"
    assert [{name: param.value for name, param in params.items()} for params in recorder.params] == [
        {"date": D1},
        {"date": D1},
        {"date": D1},
    ]


def test_dq_where_parameter_is_bound_not_interpolated(configs, warehouse, dataset, daily, dq_records) -> None:
    hostile = "x' OR '1'='1"
    warehouse.insert_rows(daily, [{"usage_date": "2024-03-03", "account": hostile, "cost": "1"}])
    recorder = RecordingWarehouse(warehouse)
    pipeline = _pipeline(
        configs,
        """
description: Checks on one account
parameters:
  account: {type: string, required: true}
steps:
  - step_id: quality
    ps_type: dq.checks
    table: {dataset_type: tenant_dataset, table: daily}
    where: account = @account
    checks: [{check: row_count, max: 1}]
""",
    )
    outcome = run_pipeline(pipeline, warehouse=recorder, account=hostile)
    assert outcome.status == StepStatus.COMPLETED, outcome.error
    literal = warehouse.query(
        f'''SELECT COUNT(*) AS n FROM {dataset}.daily WHERE account = "x' OR '1'='1"'''
    ).rows[0]["n"]
    assert _results(dq_records) == [("row_count", "PASS", "error", str(literal), "<= 1")]
    assert literal == 1
    assert all(hostile not in text for text in recorder.sql)
