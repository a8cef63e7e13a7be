from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from pipelines.loader import load_pipeline
from pipelines.models import Schedule
from pipelines.services import (
    ScheduleFieldError,
    resolve_schedule_parameters,
    schedule_create,
    schedule_update,
)
from pipelines.spec import ParameterError
from tenants.actors import Actor
from tenants.models import AuditLog

pytestmark = pytest.mark.django_db

URL = "/api/v1/pipelines/schedules"
BODY = {
    "pipeline": "test/engine/ok",
    "cron": "0 2 * * *",
    "timezone": "Asia/Kolkata",
    "parameters": {"date": "yesterday"},
    "enabled": True,
}
UTC = dt.UTC
ACTOR = Actor.system("test")


@pytest.fixture
def acme_tenant(make_tenant, test_pipelines):
    return make_tenant("acme")


@pytest.fixture
def acme(acme_tenant, tenant_client):
    return tenant_client(acme_tenant[1])


@pytest.fixture
def globex_schedule(make_tenant):
    globex, _raw = make_tenant("globex")
    return schedule_create(
        tenant=globex,
        pipeline="test/engine/ok",
        cron="0 2 * * *",
        timezone="UTC",
        parameters={"date": "today"},
        enabled=True,
        actor=ACTOR,
    )


def _z(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_kolkata_0200(after: dt.datetime) -> dt.datetime:
    """02:00 IST (UTC+05:30, no DST) is 20:30 UTC the day before: the first such instant after ``after``."""
    candidate = after.astimezone(UTC).replace(hour=20, minute=30, second=0, microsecond=0)
    return candidate if candidate > after else candidate + dt.timedelta(days=1)


def _expected_body(schedule: Schedule) -> dict:
    return {
        "id": str(schedule.pk),
        "pipeline": schedule.pipeline,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "parameters": schedule.parameters,
        "enabled": schedule.enabled,
        "next_run_at": _z(schedule.next_run_at),
        "last_run_at": _z(schedule.last_run_at),
        "created_at": _z(schedule.created_at),
        "updated_at": _z(schedule.updated_at),
    }


# --- CRUD -------------------------------------------------------------------------------------------


def test_create_returns_201_with_the_schedule_and_its_next_run(acme) -> None:
    response = acme.post(URL, BODY, format="json", HTTP_X_USER_ID="bob")

    assert response.status_code == 201, response.content
    schedule = Schedule.objects.get()
    assert (schedule.tenant_id, schedule.pipeline, schedule.cron, schedule.timezone) == (
        "acme",
        "test/engine/ok",
        "0 2 * * *",
        "Asia/Kolkata",
    )
    assert schedule.parameters == {"date": "yesterday"}
    assert schedule.next_run_at == _next_kolkata_0200(schedule.created_at)
    assert schedule.last_run_at is None
    assert response.json() == _expected_body(schedule)
    audit = AuditLog.objects.get(action="schedule.create")
    assert (audit.tenant_id, audit.target_type, audit.target_id, audit.user_id) == (
        "acme",
        "schedule",
        str(schedule.pk),
        "bob",
    )


def test_create_defaults_timezone_parameters_and_enabled(acme, test_pipelines) -> None:
    (test_pipelines / "test/engine/nodate.yml").write_text(
        "description: No parameters\nsteps:\n  - {step_id: only, ps_type: test.counting}\n"
    )
    response = acme.post(URL, {"pipeline": "test/engine/nodate", "cron": "@hourly"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["timezone"], body["parameters"], body["enabled"]) == ("UTC", {}, True)
    schedule = Schedule.objects.get()
    expected = schedule.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    assert schedule.next_run_at == expected + dt.timedelta(hours=1)


def test_create_disabled_has_no_next_run(acme) -> None:
    response = acme.post(URL, {**BODY, "enabled": False}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["next_run_at"] is None
    assert Schedule.objects.get().next_run_at is None


def test_list_is_paginated_and_shows_only_own_schedules(acme, globex_schedule) -> None:
    first = acme.post(URL, BODY, format="json").json()
    second = acme.post(URL, {**BODY, "cron": "15 6 * * 1"}, format="json").json()

    response = acme.get(URL)

    assert response.status_code == 200
    assert response.json() == {"count": 2, "next": None, "previous": None, "results": [first, second]}
    assert acme.get(URL, {"page_size": 1}).json()["results"] == [first]
    unknown = acme.get(URL, {"status": "x"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"] == {"status": ["Unknown field."]}


def test_get_returns_the_schedule(acme) -> None:
    created = acme.post(URL, BODY, format="json").json()

    response = acme.get(f"{URL}/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


def test_patch_changes_fields_recomputes_next_run_and_audits(acme) -> None:
    created = acme.post(URL, BODY, format="json").json()

    response = acme.patch(
        f"{URL}/{created['id']}",
        {"cron": "30 20 * * *", "timezone": "UTC", "parameters": {"date": "today-7", "label": "nightly"}},
        format="json",
    )

    assert response.status_code == 200, response.content
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.timezone) == ("30 20 * * *", "UTC")
    assert schedule.parameters == {"date": "today-7", "label": "nightly"}
    assert schedule.next_run_at == _next_kolkata_0200(schedule.updated_at)  # 20:30 UTC, same instants
    assert response.json() == _expected_body(schedule)
    audit = AuditLog.objects.get(action="schedule.update")
    assert audit.target_id == str(schedule.pk)
    assert audit.details == {"changed": ["cron", "parameters", "timezone"]}


def test_disabling_clears_next_run_and_enabling_sets_it(acme) -> None:
    created = acme.post(URL, BODY, format="json").json()
    detail = f"{URL}/{created['id']}"

    disabled = acme.patch(detail, {"enabled": False}, format="json")

    assert disabled.status_code == 200
    assert (disabled.json()["enabled"], disabled.json()["next_run_at"]) == (False, None)
    assert Schedule.objects.get().next_run_at is None

    enabled = acme.patch(detail, {"enabled": True}, format="json")

    assert enabled.status_code == 200
    schedule = Schedule.objects.get()
    assert schedule.enabled is True
    assert schedule.next_run_at == _next_kolkata_0200(schedule.updated_at)
    assert enabled.json()["next_run_at"] == _z(schedule.next_run_at)
    assert AuditLog.objects.filter(action="schedule.update", target_id=created["id"]).count() == 2


def test_delete_returns_204_and_audits(acme) -> None:
    created = acme.post(URL, BODY, format="json").json()

    response = acme.delete(f"{URL}/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert Schedule.objects.count() == 0
    audit = AuditLog.objects.get(action="schedule.delete")
    assert (audit.tenant_id, audit.target_id) == ("acme", created["id"])
    assert acme.get(f"{URL}/{created['id']}").status_code == 404


# --- next_run_at from the service, with an explicit now ---------------------------------------------


def test_service_computes_next_run_in_the_schedule_timezone(acme_tenant) -> None:
    tenant, _raw = acme_tenant
    now = dt.datetime(2025, 11, 19, 0, 0, tzinfo=UTC)  # 05:30 IST on the 19th

    schedule = schedule_create(
        tenant=tenant,
        pipeline="test/engine/ok",
        cron="0 2 * * *",
        timezone="Asia/Kolkata",
        parameters={"date": "yesterday"},
        enabled=True,
        actor=ACTOR,
        now=now,
    )

    assert schedule.next_run_at == dt.datetime(2025, 11, 19, 20, 30, tzinfo=UTC)  # 02:00 IST on the 20th
    later = dt.datetime(2025, 11, 19, 20, 30, tzinfo=UTC)
    moved = schedule_update(schedule=schedule, actor=ACTOR, now=later, timezone="America/New_York")
    # 02:00 EST (UTC-5) on the 20th
    assert moved.next_run_at == dt.datetime(2025, 11, 20, 7, 0, tzinfo=UTC)
    unchanged = schedule_update(schedule=moved, actor=ACTOR, now=later, parameters={"date": "today"})
    assert unchanged.next_run_at == dt.datetime(2025, 11, 20, 7, 0, tzinfo=UTC)
    disabled = schedule_update(schedule=unchanged, actor=ACTOR, now=later, enabled=False)
    assert disabled.next_run_at is None
    assert Schedule.objects.get().next_run_at is None


def test_service_rejects_bad_fields_and_writes_nothing(acme_tenant) -> None:
    tenant, _raw = acme_tenant
    arguments = {
        "tenant": tenant,
        "pipeline": "test/engine/ok",
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "parameters": {"date": "today"},
        "enabled": True,
        "actor": ACTOR,
    }
    for field, value in (("cron", "61 * * * *"), ("timezone", "Mars/Olympus"), ("pipeline", "a/b/c")):
        with pytest.raises(ScheduleFieldError) as error:
            schedule_create(**{**arguments, field: value})
        assert error.value.field == field
    with pytest.raises(ParameterError):
        schedule_create(**{**arguments, "parameters": {}})
    assert Schedule.objects.count() == 0
    assert AuditLog.objects.filter(action__startswith="schedule.").count() == 0


# --- validation errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code", "details"),
    [
        (
            {"cron": "0 2 * *"},
            "invalid_cron",
            {"cron": ["expression: expected 5 fields (minute hour day-of-month month day-of-week), got 4"]},
        ),
        (
            {"timezone": "Mars/Olympus"},
            "invalid_request",
            {"timezone": ["timezone: 'Mars/Olympus' is not a known IANA time zone"]},
        ),
        (
            {"pipeline": "test/engine/missing"},
            "invalid_request",
            {"pipeline": ["pipeline test/engine/missing not found"]},
        ),
        (
            {"pipeline": "../etc/passwd"},
            "invalid_request",
            {"pipeline": ["This value does not match the required pattern."]},
        ),
        ({"parameters": {}}, "invalid_parameters", {"date": ["this parameter is required"]}),
        (
            {"parameters": {"date": "tomorrow", "colour": "red"}},
            "invalid_parameters",
            {"date": ["must be a date in YYYY-MM-DD format"], "colour": ["unknown parameter"]},
        ),
        (
            {"parameters": {"date": "today-3651"}},
            "invalid_parameters",
            {"date": ["must be at most today-3650"]},
        ),
        (
            {"parameters": {"date": "2025-02-30"}},
            "invalid_parameters",
            {"date": ["must be a valid calendar date (YYYY-MM-DD)"]},
        ),
        (
            {"parameters": {"date": "today", "label": 5}},
            "invalid_parameters",
            {"label": ["must be a string"]},
        ),
        ({"colour": "red"}, "invalid_request", {"colour": ["Unknown field."]}),
        ({"enabled": "maybe"}, "invalid_request", {"enabled": ["Must be a valid boolean."]}),
    ],
)
def test_create_rejects_invalid_input_with_code_and_details(acme, changes, code, details) -> None:
    response = acme.post(URL, {**BODY, **changes}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["details"] == details
    assert Schedule.objects.count() == 0
    assert AuditLog.objects.filter(action__startswith="schedule.").count() == 0


def test_patch_rejects_invalid_input_and_leaves_the_row_unchanged(acme) -> None:
    created = acme.post(URL, BODY, format="json").json()
    detail = f"{URL}/{created['id']}"

    bad_cron = acme.patch(detail, {"cron": "0 0 31 2 *"}, format="json")
    bad_parameters = acme.patch(detail, {"parameters": {"date": 20251119}}, format="json")
    read_only = acme.patch(detail, {"next_run_at": "2030-01-01T00:00:00Z"}, format="json")

    assert bad_cron.status_code == 400
    assert bad_cron.json()["error"]["code"] == "invalid_cron"
    assert list(bad_cron.json()["error"]["details"]) == ["cron"]
    assert bad_parameters.status_code == 400
    assert bad_parameters.json()["error"] == {
        "code": "invalid_parameters",
        "message": "Invalid schedule parameters",
        "details": {"date": ["must be a date in YYYY-MM-DD format"]},
    }
    assert read_only.status_code == 400
    assert read_only.json()["error"]["details"] == {"next_run_at": ["Unknown field."]}
    assert acme.get(detail).json() == created
    assert AuditLog.objects.filter(action="schedule.update").count() == 0


# --- tenancy ------------------------------------------------------------------------------------------


def _rows() -> list[tuple]:
    return list(Schedule.objects.order_by("pk").values_list())


def test_another_tenants_schedule_is_not_found(acme, globex_schedule) -> None:
    detail = f"{URL}/{globex_schedule.pk}"
    before = _rows()

    responses = [
        acme.get(detail),
        acme.patch(detail, {"enabled": False}, format="json"),
        acme.delete(detail),
        acme.get(f"{URL}/not-a-uuid"),
        acme.delete(f"{URL}/not-a-uuid"),
    ]

    for response in responses:
        assert response.status_code == 404, response.content
        assert response.json() == {
            "error": {"code": "not_found", "message": "Schedule not found", "details": {}}
        }
    assert _rows() == before
    assert AuditLog.objects.filter(action__in=["schedule.update", "schedule.delete"]).count() == 0
    assert acme.get(URL).json()["count"] == 0


# --- relative dates -----------------------------------------------------------------------------------


def test_relative_dates_resolve_in_the_schedule_timezone(test_pipelines) -> None:
    specs = load_pipeline("test/engine/ok").spec.parameters
    # 12:30 UTC on the 19th is already 01:30 on the 20th in Auckland (NZDT, UTC+13).
    at = dt.datetime(2025, 11, 19, 12, 30, tzinfo=UTC)
    auckland = zoneinfo.ZoneInfo("Pacific/Auckland")
    utc = zoneinfo.ZoneInfo("UTC")

    def resolve(value: str, tz: zoneinfo.ZoneInfo) -> dict:
        return resolve_schedule_parameters({"date": value}, specs, at=at, tz=tz)

    assert resolve("yesterday", auckland) == {"date": "2025-11-19"}
    assert resolve("yesterday", utc) == {"date": "2025-11-18"}
    assert resolve("today", auckland) == {"date": "2025-11-20"}
    assert resolve("today", utc) == {"date": "2025-11-19"}
    assert resolve("today-0", utc) == {"date": "2025-11-19"}
    assert resolve("today-7", auckland) == {"date": "2025-11-13"}
    assert resolve("today-3650", utc) == {"date": "2015-11-22"}
    assert resolve("2024-02-29", auckland) == {"date": "2024-02-29"}
    with_label = resolve_schedule_parameters({"date": "yesterday", "label": "nightly"}, specs, at=at, tz=utc)
    assert with_label == {"date": "2025-11-18", "label": "nightly"}


def test_relative_date_values_are_only_for_date_parameters(test_pipelines) -> None:
    specs = load_pipeline("test/engine/ok").spec.parameters
    at = dt.datetime(2025, 11, 19, 12, 30, tzinfo=UTC)
    utc = zoneinfo.ZoneInfo("UTC")

    with pytest.raises(ParameterError) as error:
        resolve_schedule_parameters({"date": "today", "label": "today-1x"}, specs, at=at, tz=utc)
    assert error.value.errors == {"label": ["must match ^[a-z ]{0,20}$"]}
    with pytest.raises(ParameterError) as error:
        resolve_schedule_parameters({"date": "today-99999"}, specs, at=at, tz=utc)
    assert error.value.errors == {"date": ["must be a date in YYYY-MM-DD format"]}
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve_schedule_parameters({"date": "today"}, specs, at=at.replace(tzinfo=None), tz=utc)


# --- admin --------------------------------------------------------------------------------------------


def test_admin_shows_next_five_runs_and_toggles_through_the_service(acme_tenant) -> None:
    tenant, _raw = acme_tenant
    admin_client = Client()
    admin_client.force_login(get_user_model().objects.create_superuser("staff", "staff@example.com", "pw"))
    schedule = schedule_create(
        tenant=tenant,
        pipeline="test/engine/ok",
        cron="0 2 * * *",
        timezone="Asia/Kolkata",
        parameters={"date": "yesterday"},
        enabled=True,
        actor=ACTOR,
    )
    changelist = "/admin/pipelines/schedule/"

    assert admin_client.get(changelist).status_code == 200
    before = dt.datetime.now(UTC)
    page = admin_client.get(f"{changelist}{schedule.pk}/change/")
    after = dt.datetime.now(UTC)
    assert page.status_code == 200

    def five_from(moment: dt.datetime) -> bytes:
        first = _next_kolkata_0200(moment)
        runs = [(first + dt.timedelta(days=day)).strftime("%Y-%m-%d %H:%M UTC") for day in range(5)]
        return "<br>".join(runs).encode()

    # The page computed "now" between before and after; a 20:30 UTC boundary may fall in between.
    assert five_from(before) in page.content or five_from(after) in page.content

    admin_client.post(changelist, {"action": "disable_schedules", "_selected_action": [str(schedule.pk)]})
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.next_run_at) == (False, None)
    admin_client.post(changelist, {"action": "enable_schedules", "_selected_action": [str(schedule.pk)]})
    schedule.refresh_from_db()
    assert schedule.enabled is True
    assert schedule.next_run_at == _next_kolkata_0200(schedule.updated_at)
    actions = AuditLog.objects.filter(target_id=str(schedule.pk)).values_list("action", "actor_type")
    assert list(actions.order_by("created_at")) == [
        ("schedule.create", "system"),
        ("schedule.update", "staff"),
        ("schedule.update", "staff"),
    ]
