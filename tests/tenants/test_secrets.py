"""The plaintext tenant key is shown once, in the response that creates it, and appears nowhere else:
not in any table, not in any log record (at DEBUG, before any redaction), not in any SQL sent, not in
any later response. Its encrypted copy opens only in its own KMS context. Malformed keys carry no
tenant."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from convergence.kms import DecryptionError, EncryptionContext, get_kms
from tenants import keys
from tenants.models import TenantApiKey

pytestmark = pytest.mark.django_db

FIELD = "tenant_api_key"
SECRET = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"  # 32 base62 characters


class _RawRecords(logging.Handler):
    """Sees each record before any other handler's filter (the console handler redacts keys in place),
    so a key that was logged and then redacted still counts."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc_text = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.texts.append(
            "\n".join(
                [record.getMessage(), repr(record.msg), repr(record.args), exc_text, repr(vars(record))]
            )
        )


@pytest.fixture
def raw_log_records(caplog: pytest.LogCaptureFixture) -> Iterator[_RawRecords]:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")  # every SQL statement, with parameters
    handler = _RawRecords()
    root = logging.getLogger()
    root.handlers.insert(0, handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _database_dump() -> tuple[set[str], str]:
    """Every column of every table in the schema, as text; bytea also as hex and as escaped text.
    Returns (table names, dump)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name, c.column_name, c.data_type
            FROM information_schema.columns c
            JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
            ORDER BY c.table_name, c.ordinal_position
            """
        )
        tables: dict[str, list[str]] = {}
        for table, column, data_type in cursor.fetchall():
            quoted = connection.ops.quote_name(column)
            expressions = tables.setdefault(table, [])
            expressions.append(f"{quoted}::text")
            if data_type == "bytea":
                expressions += [f"encode({quoted}, 'hex')", f"encode({quoted}, 'escape')"]
        lines = []
        for table, expressions in tables.items():
            cursor.execute(
                f"SELECT concat_ws(chr(31), {', '.join(expressions)}) FROM {connection.ops.quote_name(table)}"
            )
            lines += [f"{table}: {row[0]}" for row in cursor.fetchall()]
    return set(tables), "\n".join(lines)


def _response_text(response: Any) -> str:
    headers = "\n".join(f"{name}: {value}" for name, value in response.items())
    cookies = "\n".join(f"{name}={morsel.value}" for name, morsel in response.cookies.items())
    return "\n".join([headers, cookies, response.content.decode("utf-8", errors="replace")])


def test_plaintext_key_appears_nowhere_after_it_is_shown(
    admin_client: APIClient, raw_log_records: _RawRecords, caplog: pytest.LogCaptureFixture
) -> None:
    later: list[Any] = []
    with CaptureQueriesContext(connection) as queries:
        assert (
            admin_client.post("/api/v1/admin/tenants", {"tenant_id": "acme"}, format="json").status_code
            == 201
        )
        assert (
            admin_client.post("/api/v1/admin/tenants", {"tenant_id": "globex"}, format="json").status_code
            == 201
        )
        created = admin_client.post(
            "/api/v1/admin/api-keys", {"tenant_id": "acme", "description": "ci"}, format="json"
        )
        assert created.status_code == 201
        raw = created.json()["api_key"]
        secret = raw.removeprefix("sk_acme_")
        key_hash = keys.hash_key(raw)
        tenant = APIClient()
        tenant.credentials(HTTP_X_API_KEY=raw)

        later.append(tenant.get("/api/v1/tenants/acme"))
        later.append(tenant.get("/api/v1/tenants/globex"))
        later.append(tenant.get("/api/v1/tenants/acme", HTTP_X_USER_ID="u" * 129))
        later.append(APIClient().get("/api/v1/tenants/acme", HTTP_X_API_KEY=raw + "x"))
        later.append(APIClient().get("/api/v1/admin/tenants", HTTP_X_ADMIN_KEY=raw))
        later.append(admin_client.get("/api/v1/admin/api-keys?tenant_id=acme"))
        later.append(admin_client.get("/api/v1/admin/tenants/acme"))
        later.append(admin_client.delete(f"/api/v1/admin/api-keys/{key_hash}"))
        later.append(tenant.get("/api/v1/tenants/acme"))
        later.append(admin_client.get("/api/v1/admin/api-keys"))

    assert [response.status_code for response in later] == [200, 403, 400, 401, 401, 200, 200, 200, 401, 200]
    assert len(secret) == keys.TENANT_KEY_RANDOM_LENGTH
    needles = [raw, secret, raw.encode().hex(), secret.encode().hex()]

    tables, dump = _database_dump()
    assert {"tenants_tenantapikey", "tenants_auditlog", "tenants_tenant", "django_session"} <= tables
    assert key_hash in dump  # the dump really reads the key's row ...
    assert keys.tenant_key_display_prefix(raw) in dump
    assert [needle for needle in needles if needle in dump] == []  # ... and finds no plaintext in it

    sql = "\n".join(query["sql"] for query in queries.captured_queries)
    assert key_hash in sql
    assert [needle for needle in needles if needle in sql] == []

    assert any("tenant acme created" in text for text in raw_log_records.texts)
    assert any(key_hash in text for text in raw_log_records.texts)  # SQL at DEBUG is captured too
    assert [text for text in raw_log_records.texts if raw in text or secret in text] == []
    assert raw not in caplog.text and secret not in caplog.text

    leaks = [index for index, response in enumerate(later) if secret in _response_text(response)]
    assert leaks == []
    assert secret not in "\n".join(f"{name}: {value}" for name, value in created.items())  # body only


def test_encrypted_copy_decrypts_to_the_plaintext_in_its_own_context(make_tenant: Any) -> None:
    _tenant, raw = make_tenant("acme")
    key = TenantApiKey.objects.get(key_hash=keys.hash_key(raw))
    envelope = bytes(key.encrypted_key)

    plaintext = get_kms().decrypt(
        envelope, context=EncryptionContext(tenant_id="acme", field=FIELD, record_id=str(key.id))
    )

    assert plaintext == raw.encode()
    assert raw.encode() not in envelope
    assert raw.removeprefix("sk_acme_").encode() not in envelope


@pytest.mark.parametrize(
    "context",
    [
        pytest.param(lambda key, other: EncryptionContext("globex", FIELD, str(key.id)), id="other_tenant"),
        pytest.param(lambda key, other: EncryptionContext("acme", FIELD, str(other.id)), id="other_record"),
        pytest.param(lambda key, other: EncryptionContext("acme", FIELD, ""), id="no_record"),
        pytest.param(
            lambda key, other: EncryptionContext("acme", "credential", str(key.id)), id="other_field"
        ),
        pytest.param(
            lambda key, other: EncryptionContext("globex", FIELD, str(other.id)), id="other_tenants_key"
        ),
    ],
)
def test_encrypted_copy_fails_closed_in_any_other_context(make_tenant: Any, context: Any) -> None:
    _acme, raw = make_tenant("acme")
    _globex, other_raw = make_tenant("globex")
    key = TenantApiKey.objects.get(key_hash=keys.hash_key(raw))
    other = TenantApiKey.objects.get(key_hash=keys.hash_key(other_raw))

    with pytest.raises(DecryptionError):
        get_kms().decrypt(bytes(key.encrypted_key), context=context(key, other))


# --- tenants.keys: format checks -----------------------------------------------------------------


@pytest.mark.parametrize("tenant_id", ["acme", "a_b_c", "acme_", "x1_", "a" * 50])
def test_tenant_id_from_key_reads_a_generated_key(tenant_id: str) -> None:
    raw = keys.generate_tenant_key(tenant_id)

    assert raw == f"sk_{tenant_id}_{raw[-32:]}"
    assert keys.tenant_id_from_key(raw) == tenant_id
    assert keys.tenant_id_from_key(f"sk_{tenant_id}_{SECRET}") == tenant_id


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param(f"pk_acme_{SECRET}", id="wrong_prefix"),
        pytest.param(f"SK_acme_{SECRET}", id="uppercase_prefix"),
        pytest.param(f"acme_{SECRET}", id="no_prefix"),
        pytest.param(f"sk-acme-{SECRET}", id="dashes"),
        pytest.param(f"sk_acme{SECRET}", id="no_separator"),
        pytest.param(f"sk_acme_{SECRET[:31]}", id="short_secret"),
        pytest.param(f"sk_acme_{SECRET}A", id="long_secret"),
        pytest.param(f"sk_Acme_{SECRET}", id="uppercase_tenant"),
        pytest.param(f"sk_ACME_{SECRET}", id="all_uppercase_tenant"),
        pytest.param(f"sk_1acme_{SECRET}", id="tenant_starts_with_digit"),
        pytest.param(f"sk__acme_{SECRET}", id="tenant_starts_with_underscore"),
        pytest.param(f"sk_ab_{SECRET}", id="tenant_too_short"),
        pytest.param(f"sk_{'a' * 51}_{SECRET}", id="tenant_too_long"),
        pytest.param(f"sk_ac-me_{SECRET}", id="tenant_with_dash"),
        pytest.param(f"sk_acme_{SECRET[:31]}-", id="secret_with_dash"),
        pytest.param(f"sk_acme_{SECRET[:31]}+", id="secret_with_plus"),
        pytest.param(f"sk_acme_{SECRET[:31]}/", id="secret_with_slash"),
        pytest.param(f"sk_acme_{SECRET[:31]}=", id="secret_with_padding"),
        pytest.param(f"sk_acme_{SECRET[:31]}_", id="secret_with_underscore"),
        pytest.param(f"sk_acme_{SECRET[:31]}é", id="secret_with_accent"),
        pytest.param(f"sk_acme_{SECRET[:31]}\uff21", id="secret_with_fullwidth_letter"),
        pytest.param(f"sk_acme_{SECRET[:31]}\u0663", id="secret_with_arabic_digit"),
        pytest.param(f"sk_acme_{SECRET[:16]} {SECRET[17:]}", id="secret_with_space"),
        pytest.param(f" sk_acme_{SECRET}", id="leading_space"),
        pytest.param(f"sk_acme_{SECRET} ", id="trailing_space"),
        pytest.param(f"Bearer sk_acme_{SECRET}", id="with_scheme"),
        pytest.param(f"sk_acme_{SECRET}\n", id="trailing_newline"),
    ],
)
def test_malformed_key_has_no_tenant(raw: str) -> None:
    assert keys.tenant_id_from_key(raw) is None
