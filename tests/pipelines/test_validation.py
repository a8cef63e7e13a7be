"""Config validation of processor keys: undeclared parameters, identifiers, and what SQL may reference.

Every case is checked twice: through ``parse_pipeline`` (exact ``(path, message)`` pairs) and through
``manage.py validate_pipelines`` (``file: path: message`` lines and a failing exit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pipelines.loader import PipelineConfigError, parse_pipeline

HEAD = """\
description: Validation case
parameters:
  date: {type: date}
variables:
  raw_table: raw_usage
  dashed: x-y
  statement: "x; DROP TABLE t"
steps:
"""
DEST = "destination: {dataset_type: tenant_dataset, table: out, write_mode: append}"


def _etl(sql: str, destination: str = DEST) -> str:
    return f'  - {{step_id: a, ps_type: gcp.bq_etl, sql: "{sql}", {destination}}}\n'


def _dq(checks: str, extra: str = "") -> str:
    table = "{dataset_type: tenant_dataset, table: t}"
    return f"  - {{step_id: a, ps_type: dq.checks, table: {table}{extra}, checks: {checks}}}\n"


INVALID: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "parameter_in_sql_not_declared": (
        _etl("SELECT * FROM {tenant_dataset}.t WHERE day = @day"),
        [("steps[0].sql", "parameter @day is not declared")],
    ),
    "parameter_in_where_not_declared": (
        _dq("[{check: row_count, min: 1}]", extra=", where: 'account = @account'"),
        [("steps[0].where", "parameter @account is not declared")],
    ),
    "parameter_in_replace_predicate_not_declared": (
        _etl(
            "SELECT * FROM {tenant_dataset}.t",
            "destination: {dataset_type: tenant_dataset, table: out, write_mode: replace_partition, "
            "replace_predicate: 'billing_period = @period'}",
        ),
        [("steps[0].destination.replace_predicate", "parameter @period is not declared")],
    ),
    "partition_parameter_not_declared": (
        _etl(
            "SELECT * FROM {tenant_dataset}.t",
            "destination: {dataset_type: tenant_dataset, table: out, write_mode: replace_partition, "
            "partition_field: usage_date, partition_parameter: day}",
        ),
        [("steps[0].destination.partition_parameter", "parameter @day is not declared")],
    ),
    "identifier_from_variable_invalid": (
        _etl(
            "SELECT 1 AS x",
            "destination: {dataset_type: tenant_dataset, table: '{dashed}', write_mode: append}",
        ),
        [("steps[0].destination.table", "invalid identifier 'x-y' (from {dashed})")],
    ),
    "identifier_built_from_variables_invalid": (
        _etl(
            "SELECT 1 AS x",
            "destination: {dataset_type: tenant_dataset, table: '{raw_table}-{dashed}', write_mode: append}",
        ),
        [("steps[0].destination.table", "invalid identifier 'raw_usage-x-y' (from {raw_table}-{dashed})")],
    ),
    "identifier_literal_invalid": (
        _dq("[{check: not_null, column: 'a b'}, {check: unique, columns: [account, 1x]}]"),
        [
            ("steps[0].checks[0].column", "invalid identifier 'a b'"),
            ("steps[0].checks[1].columns[1]", "invalid identifier '1x'"),
        ],
    ),
    "merge_key_from_variable_invalid": (
        _etl(
            "SELECT 1 AS x",
            "destination: {dataset_type: tenant_dataset, table: out, write_mode: merge, "
            "merge_keys: ['{dashed}']}",
        ),
        [("steps[0].destination.merge_keys[0]", "invalid identifier 'x-y' (from {dashed})")],
    ),
    "variable_in_sql_invalid": (
        _etl("SELECT * FROM {tenant_dataset}.{statement}"),
        [("steps[0].sql", "invalid identifier 'x; DROP TABLE t' (from {statement})")],
    ),
    "other_dataset": (
        _etl("SELECT * FROM other.t"),
        [("steps[0].sql", "SQL references dataset 'other' (only {tenant_dataset} allowed)")],
    ),
    "another_tenants_dataset": (
        _etl("SELECT * FROM {tenant_dataset}.t JOIN acme_local.t USING (id)"),
        [("steps[0].sql", "SQL references dataset 'acme_local' (only {tenant_dataset} allowed)")],
    ),
    "central_dataset_in_tenant_sql": (
        _etl("SELECT * FROM {central_dataset}.tenant_profiles"),
        [("steps[0].sql", "SQL references dataset 'tenants' (only {tenant_dataset} allowed)")],
    ),
    "other_dataset_in_a_subquery_of_a_predicate": (
        _dq("[{check: expression, predicate: 'id IN (SELECT id FROM other.t)'}]"),
        [("steps[0].checks[0].predicate", "SQL references dataset 'other' (only {tenant_dataset} allowed)")],
    ),
    "project_qualified": (
        _etl("SELECT * FROM `my-project.{tenant_dataset}.t`"),
        [("steps[0].sql", "table 'my-project._validation_tenant_local.t' must not name a project")],
    ),
    "information_schema": (
        _etl("SELECT * FROM {tenant_dataset}.INFORMATION_SCHEMA.TABLES"),
        [("steps[0].sql", "SQL must not read INFORMATION_SCHEMA")],
    ),
    "region_information_schema": (
        _etl("SELECT * FROM `region-us`.INFORMATION_SCHEMA.JOBS"),
        [("steps[0].sql", "SQL must not read INFORMATION_SCHEMA")],
    ),
    "wildcard_table": (
        _etl("SELECT * FROM `{tenant_dataset}.events_*`"),
        [("steps[0].sql", "wildcard table '_validation_tenant_local.events_*' is not allowed")],
    ),
    "external_query": (
        _etl("SELECT * FROM EXTERNAL_QUERY('conn', 'SELECT 1')"),
        [("steps[0].sql", "table function EXTERNAL_QUERY is not allowed")],
    ),
    "execute_immediate": (
        _etl("EXECUTE IMMEDIATE 'SELECT 1'"),
        [("steps[0].sql", "only a SELECT query is allowed here, not EXECUTE")],
    ),
    "multi_statement": (
        _etl("SELECT 1 AS x; SELECT 2 AS x"),
        [("steps[0].sql", "SQL must be a single statement (found 2)")],
    ),
    "dml_in_query_field": (
        _etl("DELETE FROM {tenant_dataset}.t WHERE TRUE"),
        [("steps[0].sql", "only a SELECT query is allowed here, not DELETE")],
    ),
    "ddl_in_query_field": (
        _dq("[{check: custom, sql: 'CREATE TABLE {tenant_dataset}.x AS SELECT 1 AS y'}]"),
        [("steps[0].checks[0].sql", "only a SELECT query is allowed here, not CREATE")],
    ),
    "scripting": (
        _etl("DECLARE x INT64"),
        [("steps[0].sql", "only a SELECT query is allowed here, not DECLARE")],
    ),
    "unqualified_table": (
        _etl("SELECT * FROM raw_usage"),
        [("steps[0].sql", "table 'raw_usage' must be dataset-qualified")],
    ),
    "system_variable": (
        _etl("SELECT @@project_id AS p"),
        [("steps[0].sql", "system variable @@project_id is not allowed")],
    ),
    "dataset_qualified_function": (
        _etl("SELECT other.fn(1) AS x"),
        [("steps[0].sql", "dataset-qualified function 'other.fn' is not allowed")],
    ),
    "sql_does_not_parse": (
        _etl("SELEC x FROM"),
        [("steps[0].sql", "SQL does not parse: Invalid expression / Unexpected token (line 1, col 12)")],
    ),
    "predicate_does_not_parse": (
        _dq("[{check: row_count, min: 1}]", extra=", where: 'TRUE) OR (TRUE'"),
        [("steps[0].where", "SQL does not parse: Invalid expression / Unexpected token (line 1, col 5)")],
    ),
    "central_dataset_type_in_tenant_pipeline": (
        _etl("SELECT 1 AS x", "destination: {dataset_type: central, table: out, write_mode: append}"),
        [("steps[0].destination.dataset_type", "dataset_type 'central' is only allowed in system pipelines")],
    ),
    "replace_partition_without_partition": (
        _etl(
            "SELECT 1 AS x",
            "destination: {dataset_type: tenant_dataset, table: out, write_mode: replace_partition}",
        ),
        [("steps[0].destination", "replace_partition needs partition_field or replace_predicate")],
    ),
    "merge_without_keys": (
        _etl("SELECT 1 AS x", "destination: {dataset_type: tenant_dataset, table: out, write_mode: merge}"),
        [("steps[0].destination", "merge needs merge_keys")],
    ),
    "dq_check_fields": (
        _dq("[{check: not_null}, {check: row_count}, {check: freshness, column: t, max_age_hours: 0}]"),
        [
            ("steps[0].checks[0].column", "field required"),
            ("steps[0].checks[1]", "row_count needs min or max"),
            ("steps[0].checks[2].max_age_hours", "Input should be greater than 0"),
        ],
    ),
    "load_file_uri_and_write_mode": (
        "  - {step_id: a, ps_type: warehouse.load_file, uri: 'https://example.com/x.csv', format: csv, "
        "destination: {dataset_type: tenant_dataset, table: out, write_mode: merge}}\n",
        [
            ("steps[0].uri", "only local paths, file:// and gs:// URIs are supported"),
            ("steps[0].destination.write_mode", "Input should be 'append' or 'truncate'"),
        ],
    ),
}


@pytest.fixture
def configs(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "configs"
    root.mkdir()
    settings.PIPELINE_CONFIGS_DIR = root
    return root


def _write(configs: Path, name: str, text: str) -> Path:
    path = configs / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _assert_invalid(name: str, path: Path, expected: list[tuple[str, str]], capsys: Any) -> None:
    with pytest.raises(PipelineConfigError) as info:
        parse_pipeline(name, path)
    assert info.value.errors == expected
    capsys.readouterr()
    with pytest.raises(CommandError, match=rf"^{len(expected)} error\(s\) in 1 file\(s\)$"):
        call_command("validate_pipelines", str(path))
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: {where}: {message}" for where, message in expected
    ]


@pytest.mark.parametrize("case", INVALID)
def test_invalid_step(configs, capsys, case) -> None:
    step, expected = INVALID[case]
    path = _write(configs, "gcp/test/example", HEAD + step)
    _assert_invalid("gcp/test/example", path, expected, capsys)


def test_system_pipeline_may_use_the_central_dataset_and_no_other(configs, capsys) -> None:
    allowed = _etl(
        "SELECT * FROM {central_dataset}.tenant_profiles JOIN {tenant_dataset}.t USING (tenant_id)",
        "destination: {dataset_type: central, table: out, write_mode: append}",
    )
    parse_pipeline("system/example", _write(configs, "system/example", HEAD + allowed))
    path = _write(configs, "system/example", HEAD + _etl("SELECT * FROM other.t"))
    expected = [
        ("steps[0].sql", "SQL references dataset 'other' (only {tenant_dataset}, {central_dataset} allowed)")
    ]
    _assert_invalid("system/example", path, expected, capsys)


def test_sql_from_a_template_is_checked_in_the_pipeline(configs, settings, tmp_path, capsys) -> None:
    templates = tmp_path / "templates"
    (templates / "gcp").mkdir(parents=True)
    (templates / "gcp" / "daily.yml").write_text(
        "ps_type: gcp.bq_etl\nsql: SELECT * FROM {tenant_dataset}.t WHERE usage_date = @date\n" + f"{DEST}\n"
    )
    settings.PIPELINE_TEMPLATES_DIR = templates
    step = "  - {step_id: a, template: gcp/daily}\n"
    parse_pipeline("gcp/test/example", _write(configs, "gcp/test/example", HEAD + step))
    path = _write(
        configs, "gcp/test/example", HEAD.replace("  date: {type: date}\n", "  day: {type: date}\n") + step
    )
    _assert_invalid("gcp/test/example", path, [("steps[0].sql", "parameter @date is not declared")], capsys)


def test_a_valid_pipeline_with_every_processor_passes(configs, capsys) -> None:
    (configs / "schemas").mkdir()
    (configs / "schemas" / "daily.json").write_text('[{"name": "usage_date", "type": "DATE"}]')
    text = HEAD + (
        "  - {step_id: load, ps_type: warehouse.load_file, uri: '{tenant_id}/usage.csv', format: csv,\n"
        "     destination: {dataset_type: tenant_dataset, table: '{raw_table}', write_mode: truncate},\n"
        "     schema_file: schemas/daily.json}\n"
        "  - step_id: daily\n"
        "    ps_type: gcp.bq_etl\n"
        "    sql: >-\n"
        "      WITH days AS (SELECT usage_date, cost FROM {tenant_dataset}.{raw_table}\n"
        "                    WHERE usage_date = @date)\n"
        "      SELECT usage_date, SUM(cost) AS cost, 'a@b' AS note FROM days GROUP BY usage_date\n"
        "    destination: {dataset_type: tenant_dataset, table: daily, write_mode: replace_partition,\n"
        "                  partition_field: usage_date, schema_file: schemas/daily.json}\n"
        "  - step_id: quality\n"
        "    ps_type: dq.checks\n"
        "    table: {dataset_type: tenant_dataset, table: daily}\n"
        "    where: usage_date = @date\n"
        "    checks:\n"
        "      - {check: accepted_values, column: note, values: ['a@b'], severity: warn}\n"
        "      - {check: custom, sql: 'SELECT * FROM {tenant_dataset}.daily AS d WHERE d.cost < 0'}\n"
    )
    path = _write(configs, "gcp/test/example", text)
    pipeline = parse_pipeline("gcp/test/example", path)
    assert [step.ps_type for step in pipeline.steps] == ["warehouse.load_file", "gcp.bq_etl", "dq.checks"]
    call_command("validate_pipelines", str(path))
    assert capsys.readouterr().out.strip() == "1 file(s) valid"
