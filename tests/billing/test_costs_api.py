"""GET /api/v1/tenants/{tenant_id}/costs: exact sums per group and granularity over rows put into the
tenant's ``focus_costs`` table, tag grouping through bound parameters, and every refusal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.costs import Granularity, GroupBy, cost_query_sql
from billing.focus.schema import FOCUS_TABLE_SPEC
from convergence.warehouse import TableRef, get_warehouse
from tenants.models import AuditLog
from tests.billing.focus_rows import focus_row

pytestmark = pytest.mark.django_db

D = dt.date
INJECTION = "team' OR '1'='1'; DROP TABLE focus_costs; --"


ROWS = [
    focus_row(
        "gcp",
        D(2025, 1, 30),
        "10.123456789",
        "9.5",
        service="Compute Engine",
        sub_account="proj-a",
        region="us-central1",
        tags={"team": "data", "env": "prod"},
    ),
    focus_row(
        "gcp",
        D(2025, 1, 31),
        "2.5",
        "2.25",
        service="BigQuery",
        sub_account="proj-b",
        region="us-east1",
        tags={"team": "web"},
    ),
    focus_row(
        "aws",
        D(2025, 1, 31),
        "7.000000001",
        "6",
        service="Amazon EC2",
        sub_account="111122223333",
        region="us-east-1",
    ),
    focus_row(
        "aws",
        D(2025, 2, 1),
        "1.1",
        "1.1",
        service="Amazon S3",
        sub_account="111122223333",
        region=None,
        category="Tax",
        tags={"team": "data"},
    ),
    focus_row(
        "azure",
        D(2025, 2, 1),
        "100",
        "0",
        service="Virtual Machines",
        sub_account="sub-1",
        region="eastus",
        category="Purchase",
        tags={"env": "prod"},
    ),
    # Outside 2025-01-30..2025-02-01 on both sides: never counted by the range queries below.
    focus_row("gcp", D(2025, 1, 29), "1000", "1000", service="BigQuery", sub_account="proj-a", region="EU"),
    focus_row(
        "azure", D(2025, 2, 2), "5000", "5000", service="Storage", sub_account="sub-1", region="eastus"
    ),
]
RANGE = "start=2025-01-30&end=2025-02-01"


@pytest.fixture
def acme(make_tenant: Any, tenant_client: Any) -> Any:
    tenant, raw = make_tenant("acme")
    return tenant, tenant_client(raw)


def _load(tenant: Any, rows: list[dict[str, Any]]) -> TableRef:
    ref = TableRef(tenant.dataset_id, "focus_costs")
    warehouse = get_warehouse()
    warehouse.create_table(ref, FOCUS_TABLE_SPEC)
    warehouse.insert_rows(ref, rows)
    return ref


@pytest.fixture
def loaded(acme: Any) -> Any:
    tenant, client = acme
    _load(tenant, ROWS)
    return tenant, client


def _get(client: Any, query: str) -> Any:
    return client.get(f"/api/v1/tenants/acme/costs?{query}")


def _rows(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(row["period"], row["key"], row["billed_cost"], row["effective_cost"]) for row in body["rows"]]


def test_total_by_provider_is_exact(loaded: Any) -> None:
    _tenant, client = loaded
    response = _get(client, f"{RANGE}&group_by=provider")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "currency": "USD",
        "start": "2025-01-30",
        "end": "2025-02-01",
        "group_by": "provider",
        "total_billed_cost": "120.72345679",
        "total_effective_cost": "18.85",
        "rows": [
            {"period": None, "key": "aws", "billed_cost": "8.100000001", "effective_cost": "7.1"},
            {"period": None, "key": "azure", "billed_cost": "100", "effective_cost": "0"},
            {"period": None, "key": "gcp", "billed_cost": "12.623456789", "effective_cost": "11.75"},
        ],
    }
    assert Decimal(body["total_billed_cost"]) == sum(Decimal(row["billed_cost"]) for row in body["rows"])


def test_money_has_no_exponent_and_no_trailing_zeros(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, "start=2025-02-01&end=2025-02-01&group_by=charge_category").json()
    assert _rows(body) == [
        (None, "Purchase", "100", "0"),
        (None, "Tax", "1.1", "1.1"),
    ]
    assert body["total_billed_cost"] == "101.1"


def test_start_and_end_are_both_inclusive(loaded: Any) -> None:
    _tenant, client = loaded
    first_day = _get(client, "start=2025-01-30&end=2025-01-30").json()
    last_day = _get(client, "start=2025-02-01&end=2025-02-01").json()
    assert first_day["total_billed_cost"] == "10.123456789"
    assert last_day["total_billed_cost"] == "101.1"


def test_day_granularity_gives_one_row_per_day_and_group(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, f"{RANGE}&group_by=provider&granularity=day").json()
    assert _rows(body) == [
        ("2025-01-30", "gcp", "10.123456789", "9.5"),
        ("2025-01-31", "aws", "7.000000001", "6"),
        ("2025-01-31", "gcp", "2.5", "2.25"),
        ("2025-02-01", "aws", "1.1", "1.1"),
        ("2025-02-01", "azure", "100", "0"),
    ]
    assert body["total_billed_cost"] == "120.72345679"


def test_month_granularity_labels_periods_yyyy_mm(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, "start=2025-01-01&end=2025-02-28&granularity=month").json()
    assert _rows(body) == [
        ("2025-01", None, "1019.62345679", "1017.75"),
        ("2025-02", None, "5101.1", "5001.1"),
    ]


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "service",
            [
                ("Amazon EC2", "7.000000001"),
                ("Amazon S3", "1.1"),
                ("BigQuery", "2.5"),
                ("Compute Engine", "10.123456789"),
                ("Virtual Machines", "100"),
            ],
        ),
        (
            "sub_account",
            [
                ("111122223333", "8.100000001"),
                ("proj-a", "10.123456789"),
                ("proj-b", "2.5"),
                ("sub-1", "100"),
            ],
        ),
        (
            "region",
            [
                ("eastus", "100"),
                ("us-central1", "10.123456789"),
                ("us-east-1", "7.000000001"),
                ("us-east1", "2.5"),
                (None, "1.1"),
            ],
        ),
        ("charge_category", [("Purchase", "100"), ("Tax", "1.1"), ("Usage", "19.62345679")]),
    ],
)
def test_each_dimension_groups_on_its_focus_column(loaded: Any, group_by: str, expected: list[Any]) -> None:
    _tenant, client = loaded
    body = _get(client, f"{RANGE}&group_by={group_by}").json()
    assert [(row["key"], row["billed_cost"]) for row in body["rows"]] == expected
    assert body["group_by"] == group_by
    assert body["total_billed_cost"] == "120.72345679"


def test_without_group_by_one_row_with_null_key(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, RANGE).json()
    assert body["group_by"] is None
    assert _rows(body) == [(None, None, "120.72345679", "18.85")]


def test_tag_grouping_puts_untagged_rows_under_null_key(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, f"{RANGE}&group_by=tag:team").json()
    assert body["group_by"] == "tag:team"
    assert _rows(body) == [
        (None, "data", "11.223456789", "10.6"),
        (None, "web", "2.5", "2.25"),
        (None, None, "107.000000001", "6"),
    ]
    assert body["total_billed_cost"] == "120.72345679"


def test_tag_grouping_by_day(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, f"{RANGE}&group_by=tag:env&granularity=day").json()
    assert _rows(body) == [
        ("2025-01-30", "prod", "10.123456789", "9.5"),
        ("2025-01-31", None, "9.500000001", "8.25"),
        ("2025-02-01", "prod", "100", "0"),
        ("2025-02-01", None, "1.1", "1.1"),
    ]


def test_injection_string_as_tag_key_is_only_a_value(loaded: Any) -> None:
    tenant, client = loaded
    response = client.get(
        "/api/v1/tenants/acme/costs",
        {"start": "2025-01-30", "end": "2025-02-01", "group_by": f"tag:{INJECTION}"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["group_by"] == f"tag:{INJECTION}"
    assert _rows(body) == [(None, None, "120.72345679", "18.85")]
    assert get_warehouse().describe_table(TableRef(tenant.dataset_id, "focus_costs")).num_rows == len(ROWS)


def test_tag_key_never_enters_the_sql_text() -> None:
    sql = cost_query_sql(
        table=TableRef("acme_local", "focus_costs"),
        group_by=GroupBy(dimension="tag", tag_key=INJECTION),
        granularity=Granularity.DAY,
    )
    assert "@tag_key" in sql
    assert "@start" in sql and "@end" in sql
    assert "team" not in sql and "DROP" not in sql


def test_tag_key_may_hold_spaces_colons_and_unicode(acme: Any) -> None:
    tenant, client = acme
    _load(
        tenant,
        [
            focus_row(
                "gcp",
                D(2025, 3, 1),
                "4.2",
                "4.2",
                service="BigQuery",
                sub_account="p",
                region="EU",
                tags={"cost center: ünit": "R&D"},
            )
        ],
    )
    response = client.get(
        "/api/v1/tenants/acme/costs",
        {"start": "2025-03-01", "end": "2025-03-01", "group_by": "tag:cost center: ünit"},
    )
    assert response.status_code == 200, response.content
    assert _rows(response.json()) == [(None, "R&D", "4.2", "4.2")]


def test_tenant_without_focus_table_gets_zero_totals(acme: Any) -> None:
    tenant, client = acme
    response = _get(client, f"{RANGE}&group_by=provider&granularity=day")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "currency": None,
        "start": "2025-01-30",
        "end": "2025-02-01",
        "group_by": "provider",
        "total_billed_cost": "0",
        "total_effective_cost": "0",
        "rows": [],
    }
    assert not get_warehouse().table_exists(TableRef(tenant.dataset_id, "focus_costs"))


def test_range_without_rows_gets_zero_totals(loaded: Any) -> None:
    _tenant, client = loaded
    body = _get(client, "start=2024-01-01&end=2024-12-31").json()
    assert (body["currency"], body["total_billed_cost"], body["rows"]) == (None, "0", [])


def test_mixed_currencies_are_refused_until_one_is_chosen(acme: Any) -> None:
    tenant, client = acme
    _load(
        tenant,
        [
            focus_row("aws", D(2025, 5, 1), "3", "3", service="S3", sub_account="1", region="x"),
            focus_row(
                "azure", D(2025, 5, 1), "2.5", "2", service="VM", sub_account="s", region="y", currency="EUR"
            ),
        ],
    )
    refused = _get(client, "start=2025-05-01&end=2025-05-01&group_by=provider")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "mixed_currencies"
    assert refused.json()["error"]["details"] == {"currency": ["EUR", "USD"]}

    euros = _get(client, "start=2025-05-01&end=2025-05-01&group_by=provider&currency=EUR")
    assert euros.status_code == 200
    assert euros.json()["currency"] == "EUR"
    assert _rows(euros.json()) == [(None, "azure", "2.5", "2")]


def test_a_366_day_range_is_accepted(loaded: Any) -> None:
    _tenant, client = loaded
    response = _get(client, "start=2024-02-01&end=2025-01-31")
    assert response.status_code == 200, response.content
    assert response.json()["total_billed_cost"] == "1019.62345679"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("end=2025-02-01", "start"),
        ("start=2025-01-30", "end"),
        ("start=2025-13-01&end=2025-02-01", "start"),
        ("start=2025-01-30&end=yesterday", "end"),
        ("start=2025-01-30T00:00:00Z&end=2025-02-01", "start"),
        ("start=2025-02-01&end=2025-01-31", "end"),
        ("start=2024-01-31&end=2025-01-31", "end"),
        ("start=2025-01-30&end=2025-02-01&group_by=project", "group_by"),
        ("start=2025-01-30&end=2025-02-01&group_by=Provider", "group_by"),
        ("start=2025-01-30&end=2025-02-01&group_by=tag:", "group_by"),
        ("start=2025-01-30&end=2025-02-01&group_by=tag:" + "k" * 129, "group_by"),
        ("start=2025-01-30&end=2025-02-01&group_by=tag:team%0Aenv", "group_by"),
        ("start=2025-01-30&end=2025-02-01&group_by=tag:a%00b", "group_by"),
        ("start=2025-01-30&end=2025-02-01&granularity=week", "granularity"),
        ("start=2025-01-30&end=2025-02-01&granularity=", "granularity"),
        ("start=2025-01-30&end=2025-02-01&currency=usd", "currency"),
        ("start=2025-01-30&end=2025-02-01&tenant_id=globex", "tenant_id"),
        ("start=2025-01-30&end=2025-02-01&dataset=globex_local", "dataset"),
        ("start=2025-01-30&start=2024-01-01&end=2025-02-01", "start"),
    ],
)
def test_bad_parameters_are_400_keyed_by_parameter_and_change_nothing(
    loaded: Any, query: str, field: str
) -> None:
    tenant, client = loaded
    ref = TableRef(tenant.dataset_id, "focus_costs")
    audit_before = AuditLog.objects.count()

    response = _get(client, query)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert list(error["details"]) == [field]
    assert response["X-Quota-Daily-Remaining"] == "6"
    assert get_warehouse().describe_table(ref).num_rows == len(ROWS)
    assert AuditLog.objects.count() == audit_before


def test_a_128_character_tag_key_is_accepted(loaded: Any) -> None:
    _tenant, client = loaded
    response = _get(client, f"{RANGE}&group_by=tag:" + "k" * 128)
    assert response.status_code == 200, response.content
    assert _rows(response.json()) == [(None, None, "120.72345679", "18.85")]


def test_quota_headers_are_on_the_answer_and_nothing_is_consumed(loaded: Any) -> None:
    tenant, client = loaded
    response = _get(client, RANGE)
    assert response.status_code == 200
    assert response["X-Quota-Daily-Limit"] == "6"
    assert response["X-Quota-Daily-Remaining"] == "6"
    assert response["X-Quota-Monthly-Remaining"] == "180"
    assert response["X-Quota-Concurrent-Limit"] == "1"
    tenant.usage.refresh_from_db()
    assert (tenant.usage.runs_today, tenant.usage.running) == (0, 0)


def test_the_query_reads_only_the_callers_dataset(loaded: Any, make_tenant: Any, tenant_client: Any) -> None:
    _globex, globex_key = make_tenant("globex")
    globex = tenant_client(globex_key)
    own = globex.get(f"/api/v1/tenants/globex/costs?{RANGE}&group_by=provider")
    assert own.status_code == 200
    assert (own.json()["total_billed_cost"], own.json()["rows"]) == ("0", [])
    other = globex.get(f"/api/v1/tenants/acme/costs?{RANGE}")
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "tenant_mismatch"
    assert b"120.72" not in other.content


def test_the_request_costs_no_writes_to_the_database(loaded: Any) -> None:
    _tenant, client = loaded
    _get(client, RANGE)  # the key's last_used_at is touched by the first request only
    with CaptureQueriesContext(connection) as queries:
        response = _get(client, f"{RANGE}&group_by=tag:team&granularity=day")
    assert response.status_code == 200
    writes = [query["sql"] for query in queries.captured_queries if not query["sql"].startswith("SELECT")]
    assert writes == []


def test_warehouse_down_is_503_envelope(loaded: Any, settings: Any, tmp_path: Any) -> None:
    _tenant, client = loaded
    broken = tmp_path / "warehouse.duckdb"
    broken.write_bytes(b"this is not a duckdb database file" * 100)
    settings.WAREHOUSE_URL = f"duckdb:///{broken}"
    get_warehouse.cache_clear()

    response = _get(client, RANGE)

    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "service_unavailable"
    assert str(tmp_path).encode() not in response.content
    assert b"SELECT" not in response.content


def test_a_row_repeating_a_tag_key_is_counted_once(acme: Any) -> None:
    tenant, client = acme
    repeated = focus_row("gcp", D(2025, 1, 1), "10", "8", service="x", sub_account=None, region=None)
    repeated["x_TagList"] = [{"key": "env", "value": "prod"}, {"key": "env", "value": "prod"}]
    conflicting = focus_row("aws", D(2025, 1, 1), "1", "1", service="y", sub_account=None, region=None)
    conflicting["x_TagList"] = [{"key": "env", "value": "b"}, {"key": "env", "value": "a"}]
    _load(tenant, [repeated, conflicting])

    response = _get(client, "start=2025-01-01&end=2025-01-01&group_by=tag:env")

    assert response.status_code == 200, response.content
    body = response.json()
    # The same totals as without grouping: a repeated key never multiplies a row's cost.
    assert (body["total_billed_cost"], body["total_effective_cost"]) == ("11", "9")
    assert _rows(body) == [(None, "a", "1", "1"), (None, "prod", "10", "8")]
