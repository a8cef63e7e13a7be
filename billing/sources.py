"""Billing sources: where a tenant's provider billing export is read from, and how it is read.

A source location is one of

- ``file:///abs/path``: a folder inside ``SOURCE_FILE_ROOT/{tenant_id}/`` after symlinks are resolved
  (each tenant has its own folder under the shared root, so one tenant can never name another's files
  or any other server file);
- ``s3://bucket/prefix`` (AWS), read with boto3 against AWS or the configured ``AWS_S3_ENDPOINT_URL``;
- ``az://container/prefix``, ``https://{account}.blob.core.windows.net/container/prefix`` or
  ``{AZURE_BLOB_ENDPOINT}/{account}/container/prefix`` (Azure), read with azure-storage-blob;
- ``project.dataset.table`` (GCP): the BigQuery billing export table (scheme ``bq``), never one of
  Convergence's own datasets. On a BigQuery warehouse it needs a GCP credential of the same tenant (a
  service account key) and is read with a client built from that key, never with the server's identity
  (which may read other customers' exports). On the embedded DuckDB warehouse (development and demo: one
  operator, no cloud identities) the table is read from the local warehouse and a credential is optional.

Endpoints are never taken from tenants: an object store is reached only at the provider's public
endpoint or the emulator endpoint configured in settings. boto3 and azure-storage-blob are imported
lazily, inside the functions that use them.

Contract for pipelines: ``resolve_source`` → ``ResolvedSource``; ``fetch_files`` lists and (for object
stores) downloads the export files; ``credential_secret`` decrypts a credential and is called only by the
step that needs it (``fetch_files`` calls it itself). Errors are ``SourceNotConfigured`` and
``SourceError(message, retryable)``; their messages are safe to show the tenant (no secrets, no server
paths beyond the tenant's own location)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

from convergence.kms import DecryptionError, EncryptionContext, KmsError, get_kms
from tenants.models import CloudCredential, CloudProvider, Tenant

logger = logging.getLogger(__name__)

SCHEMES = ("file", "s3", "az", "bq")
#: The KMS field name of credential envelopes (part of the associated data: changing it orphans them).
CREDENTIAL_FIELD = "cloud_credential"
MAX_SECRET_BYTES = 64 * 1024
MAX_LOCATION_LENGTH = 2048
AZURE_PUBLIC_SUFFIX = ".blob.core.windows.net"
# Object-store client bounds: a stuck endpoint fails the step (retryable) instead of hanging a worker.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
CLIENT_RETRIES = 3

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]\Z")
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}\Z")
_GCP_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")
_BQ_DATASET = re.compile(r"[A-Za-z0-9_]{1,1024}\Z")
_BQ_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}\Z")
_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}\Z")
_TOKEN = re.compile(r"[!-~]{1,4096}\Z")  # printable ASCII, no spaces: key ids, keys, tokens
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Schemas every warehouse has that are not tenant data but must not be readable through a source either
# (``_convergence_meta`` is the DuckDB adapter's own catalog of every tenant's tables).
_SYSTEM_DATASETS = frozenset(
    {"information_schema", "main", "pg_catalog", "temp", "system", "_convergence_meta"}
)
# Dataset suffixes of every environment: a warehouse project shared by staging and production must not let
# a tenant of one read a tenant dataset of the other.
_ENV_SUFFIXES = ("local", "stage", "prod")
_GCP_TOKEN_URIS = frozenset(
    {"https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token"}
)


class SourceNotConfigured(Exception):
    """The tenant has no billing source for the provider. ``message`` names the provider."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceError(Exception):
    """Reading a source failed. ``message`` is safe to show the tenant; ``retryable`` says whether the
    same call may succeed later (network, throttling, a 5xx) or needs a change (permissions, names)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class InvalidSource(Exception):
    """A location, credential or secret failed validation. ``errors`` maps a request field
    (``location``, ``credential_id``, ``secret``) to messages; the API answers 400 with them."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class ResolvedSource:
    """A tenant's source for one provider, as pipelines see it."""

    provider: str
    location: str
    scheme: str  # "file" | "s3" | "az" | "bq"
    credential_id: int | None


@dataclass(frozen=True)
class ObjectLocation:
    """A parsed object-store location. ``account`` and ``account_url`` are set for Azure blob URLs (for
    ``az://`` the account comes from the credential)."""

    container: str
    prefix: str  # without leading/trailing slashes; "" for the whole bucket/container
    account: str | None = None
    account_url: str | None = None


@dataclass(frozen=True)
class TableLocation:
    project: str
    dataset: str
    table: str


# --- parsing and validation -----------------------------------------------------------------------


def location_scheme(location: str) -> str:
    """The scheme of a location: ``file``, ``s3``, ``az`` (az:// and blob URLs) or ``bq``."""
    if location.startswith("file://"):
        return "file"
    if location.startswith("s3://"):
        return "s3"
    if location.startswith(("az://", "https://", "http://")):
        return "az"
    return "bq"


def _clean_prefix(raw: str, *, label: str) -> str:
    """A key prefix as ``a/b`` (no leading/trailing slash). ``ValueError`` for empty, ``.`` or ``..``
    segments, backslashes or control characters: a prefix is also a relative path on our disk."""
    stripped = raw.strip("/")
    if not stripped:
        return ""
    if _CONTROL.search(stripped) or "\\" in stripped:
        raise ValueError(f"{label} must not contain control characters or backslashes")
    if any(segment in {"", ".", ".."} for segment in stripped.split("/")):
        raise ValueError(f"{label} must not contain empty, '.' or '..' path segments")
    return stripped


def tenant_file_root(tenant_id: str) -> Path:
    """The folder a tenant's ``file://`` sources must resolve into: ``SOURCE_FILE_ROOT/{tenant_id}``."""
    return Path(settings.SOURCE_FILE_ROOT).resolve() / tenant_id


def file_location_path(location: str, *, tenant_id: str) -> Path:
    """The resolved folder of a ``file://`` location. ``ValueError`` unless it is an absolute path
    without ``..`` that resolves, after symlinks, inside ``tenant_file_root(tenant_id)`` (the folder
    itself may not exist yet)."""
    parts = urlsplit(location)
    if parts.scheme != "file" or parts.netloc not in {"", "localhost"} or parts.query or parts.fragment:
        raise ValueError("must look like file:///absolute/path (no host, query or fragment)")
    path = unquote(parts.path)
    if _CONTROL.search(path) or "\\" in path:
        raise ValueError("must not contain control characters or backslashes")
    if not path.startswith("/"):
        raise ValueError("must be an absolute path: file:///absolute/path")
    if ".." in PurePosixPath(path).parts:
        raise ValueError("must not contain '..' segments")
    root = tenant_file_root(tenant_id)
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"must be inside file://{root}/ (after resolving symlinks)")
    return resolved


def s3_location(location: str) -> ObjectLocation:
    """Parse ``s3://bucket/prefix``. ``ValueError`` for a bad bucket name or prefix."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError("must look like s3://bucket/prefix")
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket:
        raise ValueError(
            "bucket name must be 3-63 characters of lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    try:
        ipaddress.ip_address(bucket)
    except ValueError:
        pass
    else:
        raise ValueError("bucket name must not be an IP address")
    return ObjectLocation(container=bucket, prefix=_clean_prefix(parts.path, label="prefix"))


def _container_and_prefix(path: str) -> tuple[str, str]:
    container, _, prefix = path.strip("/").partition("/")
    if not _CONTAINER.match(container):
        raise ValueError(
            "container name must be 3-63 characters of lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return container, _clean_prefix(prefix, label="prefix")


def azure_location(location: str) -> ObjectLocation:
    """Parse ``az://container/prefix``, ``https://{account}.blob.core.windows.net/container/prefix`` or
    ``{AZURE_BLOB_ENDPOINT}/{account}/container/prefix``. ``ValueError`` for anything else, in
    particular for any other host."""
    if location.startswith("az://"):
        parts = urlsplit(location)
        if parts.query or parts.fragment or not parts.netloc:
            raise ValueError("must look like az://container/prefix")
        container, prefix = _container_and_prefix(f"{parts.netloc}/{parts.path}")
        return ObjectLocation(container=container, prefix=prefix)
    emulator = settings.AZURE_BLOB_ENDPOINT
    if emulator and location.startswith(emulator + "/"):
        account, _, rest = location[len(emulator) + 1 :].partition("/")
        if "?" in rest or "#" in rest or not _ACCOUNT.match(account):
            raise ValueError("must look like {endpoint}/{account}/container/prefix")
        container, prefix = _container_and_prefix(unquote(rest))
        return ObjectLocation(container, prefix, account=account, account_url=f"{emulator}/{account}")
    parts = urlsplit(location)
    host = parts.hostname or ""
    account = host.removesuffix(AZURE_PUBLIC_SUFFIX)
    if (
        parts.scheme != "https"
        or parts.netloc != host
        or not host.endswith(AZURE_PUBLIC_SUFFIX)
        or not _ACCOUNT.match(account)
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            "must be az://container/prefix or https://{account}.blob.core.windows.net/container/prefix"
            + (" or an address on the configured emulator endpoint" if emulator else "")
        )
    container, prefix = _container_and_prefix(unquote(parts.path))
    return ObjectLocation(container, prefix, account=account, account_url=f"https://{host}")


def _own_dataset(dataset: str) -> bool:
    """True for datasets Convergence itself owns: the central dataset, any tenant's dataset (present or
    future: anything shaped ``{tenant_id}_{env}``, for every env, since environments may share a
    project) and the warehouses' system and adapter schemas. On DuckDB the
    project part is ignored, so these are refused whatever project a location names."""
    lowered = dataset.lower()
    if lowered == settings.CENTRAL_DATASET.lower() or lowered in _SYSTEM_DATASETS:
        return True
    suffixes = "|".join(re.escape(suffix) for suffix in sorted({*_ENV_SUFFIXES, settings.ENV_SUFFIX}))
    if re.fullmatch(rf"[a-z][a-z0-9_]{{2,49}}_(?:{suffixes})", lowered):
        return True
    return Tenant.objects.filter(dataset_id__iexact=dataset).exists()


def table_location(location: str) -> TableLocation:
    """Parse and check a GCP export table ``project.dataset.table``. ``ValueError`` for bad identifiers
    or one of Convergence's own datasets."""
    parts = location.split(".")
    if len(parts) != 3:
        raise ValueError("must be a BigQuery table project.dataset.table, file://..., or nothing else")
    project, dataset, table = parts
    if not _GCP_PROJECT.match(project):
        raise ValueError("project must be a GCP project id (6-30 lowercase letters, digits and hyphens)")
    if not _BQ_DATASET.match(dataset):
        raise ValueError("dataset must be letters, digits and underscores")
    if not _BQ_TABLE.match(table):
        raise ValueError("table must be letters, digits and underscores, not starting with a digit")
    if _own_dataset(dataset):
        raise ValueError(f"dataset {dataset!r} belongs to Convergence itself and cannot be a source")
    return TableLocation(project, dataset, table)


_ALLOWED_SCHEMES: dict[str, tuple[str, ...]] = {
    CloudProvider.GCP: ("file", "bq"),
    CloudProvider.AWS: ("file", "s3"),
    CloudProvider.AZURE: ("file", "az"),
}
_LOCATION_HINTS: dict[str, str] = {
    CloudProvider.GCP: "a BigQuery export table project.dataset.table or file:///...",
    CloudProvider.AWS: "s3://bucket/prefix or file:///...",
    CloudProvider.AZURE: "az://container/prefix, https://{account}.blob.core.windows.net/container/prefix "
    "or file:///...",
}


def location_validate(*, tenant_id: str, provider: str, location: str) -> str:
    """Check a location for ``provider`` and return its scheme. ``InvalidSource({"location": [...]})``
    when it is malformed, of another provider's kind, outside the tenant's file root, on a host that is
    neither the provider's nor the configured emulator's, or one of Convergence's own datasets."""
    if provider not in _ALLOWED_SCHEMES:
        raise InvalidSource({"provider": [f"unknown provider {provider!r}"]})
    if not location or location != location.strip() or len(location) > MAX_LOCATION_LENGTH:
        raise InvalidSource(
            {"location": [f"must be 1-{MAX_LOCATION_LENGTH} characters without surrounding whitespace"]}
        )
    scheme = location_scheme(location)
    if scheme not in _ALLOWED_SCHEMES[provider]:
        raise InvalidSource({"location": [f"a {provider} source must be {_LOCATION_HINTS[provider]}"]})
    try:
        if scheme == "file":
            file_location_path(location, tenant_id=tenant_id)
        elif scheme == "s3":
            s3_location(location)
        elif scheme == "az":
            azure_location(location)
        else:
            table_location(location)
    except ValueError as exc:
        raise InvalidSource({"location": [str(exc)]}) from None
    return scheme


def warehouse_is_bigquery() -> bool:
    """True when the configured warehouse (``WAREHOUSE_URL``) is BigQuery."""
    return urlsplit(settings.WAREHOUSE_URL).scheme == "bigquery"


def scheme_needs_credential(scheme: str) -> bool:
    """Object stores need the tenant's own credential: without one the SDKs would fall back to the
    server's ambient cloud identity and read with our permissions instead of the tenant's. So does a
    BigQuery table on a BigQuery warehouse (the server's service account could read any table it has
    access to, such as another customer's export); on the embedded DuckDB warehouse a table source is a
    local table and needs none."""
    return scheme in {"s3", "az"} or (scheme == "bq" and warehouse_is_bigquery())


# --- secrets --------------------------------------------------------------------------------------


def canonical_secret(secret: dict[str, Any]) -> bytes:
    """The secret as canonical JSON (sorted keys, no spaces): what is encrypted, sized and fingerprinted."""
    return json.dumps(secret, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def secret_fingerprint(secret: dict[str, Any]) -> str:
    """``hmac-sha256:`` + 16 hex digits of HMAC-SHA256 over the canonical secret, keyed by a key
    derived from ``SECRET_KEY``. A plain SHA-256 of a low-entropy secret could be brute-forced offline
    from the fingerprint; a keyed digest cannot without the server key. Equal secrets still show equal
    fingerprints (which is the point: telling credentials apart); rotating ``SECRET_KEY`` changes the
    fingerprints of credentials created afterwards, not stored ones."""
    key = hashlib.sha256(b"convergence.cloud-credential-fingerprint:" + settings.SECRET_KEY.encode()).digest()
    return "hmac-sha256:" + hmac.new(key, canonical_secret(secret), hashlib.sha256).hexdigest()[:16]


def _token(secret: dict[str, Any], key: str, errors: list[str], *, required: bool = True) -> str | None:
    value = secret.get(key)
    if value is None:
        if required:
            errors.append(f"{key} is required")
        return None
    if not isinstance(value, str) or not _TOKEN.match(value):
        errors.append(f"{key} must be a non-empty string of printable characters without spaces")
        return None
    return value


def _aws_secret_errors(secret: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    allowed = {"access_key_id", "secret_access_key", "session_token", "region", "endpoint_url"}
    errors += [f"{key} is not an accepted key" for key in sorted(set(secret) - allowed)]
    _token(secret, "access_key_id", errors)
    _token(secret, "secret_access_key", errors)
    _token(secret, "session_token", errors, required=False)
    region = secret.get("region")
    if region is not None and not (isinstance(region, str) and _AWS_REGION.match(region)):
        errors.append("region must be an AWS region name such as eu-west-1")
    endpoint = secret.get("endpoint_url")
    if endpoint is not None:
        configured = settings.AWS_S3_ENDPOINT_URL
        if not configured or not isinstance(endpoint, str) or endpoint.rstrip("/") != configured:
            errors.append("endpoint_url is not accepted: S3 is reached only at AWS or the server's endpoint")
    return errors


def connection_string_fields(connection_string: str) -> dict[str, str]:
    """``Key=Value;...`` as a dict with lowercased keys (values may contain ``=``)."""
    fields: dict[str, str] = {}
    for part in connection_string.split(";"):
        if not part.strip():
            continue
        key, separator, value = part.partition("=")
        if not separator:
            raise ValueError("connection_string must be Key=Value pairs separated by ';'")
        fields[key.strip().lower()] = value.strip()
    return fields


def _azure_endpoint_allowed(endpoint: str, account: str) -> bool:
    endpoint = endpoint.rstrip("/")
    if endpoint == f"https://{account}{AZURE_PUBLIC_SUFFIX}":
        return True
    emulator = settings.AZURE_BLOB_ENDPOINT
    return bool(emulator) and endpoint == f"{emulator}/{account}"


def _azure_secret_errors(secret: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    allowed = {"connection_string", "account_name", "account_key", "sas_token"}
    errors += [f"{key} is not an accepted key" for key in sorted(set(secret) - allowed)]
    if ("connection_string" in secret) == ("account_name" in secret):
        return [*errors, "give either connection_string, or account_name with account_key or sas_token"]
    if "connection_string" in secret:
        if {"account_key", "sas_token"} & set(secret):
            errors.append("account_key and sas_token go inside connection_string when one is given")
        raw = secret["connection_string"]
        if not isinstance(raw, str) or not raw.strip() or len(raw) > 8192:
            return [*errors, "connection_string must be a non-empty string"]
        try:
            fields = connection_string_fields(raw)
        except ValueError as exc:
            return [*errors, str(exc)]
        account = fields.get("accountname", "")
        if not _ACCOUNT.match(account):
            errors.append("connection_string needs AccountName (3-24 lowercase letters and digits)")
        if bool(fields.get("accountkey")) == bool(fields.get("sharedaccesssignature")):
            errors.append("connection_string needs exactly one of AccountKey or SharedAccessSignature")
        if fields.get("usedevelopmentstorage"):
            errors.append("UseDevelopmentStorage is not accepted")
        if "blobendpoint" in fields and not _azure_endpoint_allowed(fields["blobendpoint"], account):
            errors.append("BlobEndpoint must be https://{AccountName}.blob.core.windows.net")
        if fields.get("endpointsuffix", "core.windows.net") != "core.windows.net":
            errors.append("EndpointSuffix must be core.windows.net")
        return errors
    account_name = secret.get("account_name")
    if not (isinstance(account_name, str) and _ACCOUNT.match(account_name)):
        errors.append("account_name must be 3-24 lowercase letters and digits")
    if ("account_key" in secret) == ("sas_token" in secret):
        errors.append("give exactly one of account_key or sas_token with account_name")
    _token(secret, "account_key", errors, required=False)
    _token(secret, "sas_token", errors, required=False)
    return errors


def _gcp_secret_errors(secret: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if secret.get("type") != "service_account":
        errors.append('type must be "service_account" (a service account key JSON)')
    email = secret.get("client_email")
    if not (isinstance(email, str) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email)):
        errors.append("client_email must be the service account's email")
    key = secret.get("private_key")
    if not (isinstance(key, str) and key.startswith("-----BEGIN") and "PRIVATE KEY-----" in key):
        errors.append("private_key must be a PEM private key")
    # google-auth posts a signed token to token_uri: only Google's own token endpoints are acceptable.
    # (A JSON array or object is unhashable: test the type before the set membership.)
    token_uri = secret.get("token_uri")
    if token_uri is not None and not (isinstance(token_uri, str) and token_uri in _GCP_TOKEN_URIS):
        errors.append("token_uri must be Google's token endpoint")
    if secret.get("universe_domain", "googleapis.com") != "googleapis.com":
        errors.append("universe_domain must be googleapis.com")
    return errors


_SECRET_CHECKS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    CloudProvider.AWS: _aws_secret_errors,
    CloudProvider.AZURE: _azure_secret_errors,
    CloudProvider.GCP: _gcp_secret_errors,
}


def secret_validate(*, provider: str, secret: Any) -> bytes:
    """Check a credential secret for ``provider`` and return its canonical JSON bytes.
    ``InvalidSource({"secret": [...]})`` when it is not an object, is larger than 64 KiB, or lacks the
    provider's required keys (AWS ``access_key_id`` + ``secret_access_key``; Azure ``connection_string``
    or ``account_name`` + ``account_key``|``sas_token``; GCP a service account key), or names an endpoint
    other than the provider's own or the configured emulator's."""
    if not isinstance(secret, dict) or not secret:
        raise InvalidSource({"secret": ["must be a non-empty JSON object"]})
    try:
        payload = canonical_secret(secret)
    except UnicodeEncodeError:
        # JSON allows an unpaired surrogate escape ("\\ud800"), which has no UTF-8 encoding.
        raise InvalidSource({"secret": ["must not contain unpaired surrogate characters"]}) from None
    if len(payload) > MAX_SECRET_BYTES:
        raise InvalidSource({"secret": [f"must be at most {MAX_SECRET_BYTES // 1024} KiB as JSON"]})
    check = _SECRET_CHECKS.get(provider)
    if check is None:
        raise InvalidSource({"provider": [f"unknown provider {provider!r}"]})
    errors = check(secret)
    if errors:
        raise InvalidSource({"secret": errors})
    return payload


def credential_context(*, tenant_id: str, secret_id: str) -> EncryptionContext:
    return EncryptionContext(tenant_id=tenant_id, field=CREDENTIAL_FIELD, record_id=secret_id)


# --- the pipeline-facing contract -----------------------------------------------------------------


def resolve_source(*, tenant_id: str, provider: str) -> ResolvedSource:
    """The tenant's source for ``provider``. ``SourceNotConfigured`` when there is none. A GCP table
    source is re-checked against the datasets that exist now (a tenant created after the source was
    saved may own a dataset of that name): ``SourceError`` if it has become one of ours."""
    from billing.models import BillingSource

    source = BillingSource.objects.filter(tenant_id=tenant_id, provider=provider).first()
    if source is None:
        raise SourceNotConfigured(
            f"No {provider} billing source is configured for this tenant: "
            f"set one with PUT /api/v1/tenants/{tenant_id}/sources/{provider}"
        )
    scheme = location_scheme(source.location)
    if scheme == "bq":
        try:
            table_location(source.location)
        except ValueError as exc:
            raise SourceError(f"The {provider} source location is no longer valid: {exc}") from None
    return ResolvedSource(
        provider=source.provider, location=source.location, scheme=scheme, credential_id=source.credential_id
    )


def credential_secret(*, tenant_id: str, credential_id: int) -> dict[str, Any]:
    """Decrypt the tenant's credential through the KMS adapter. Call only inside the step that uses it,
    and never log or store the result. ``SourceError`` when the credential is not this tenant's (or
    gone), cannot be decrypted (not retryable), or the KMS is unreachable (retryable)."""
    row = (
        CloudCredential.objects.filter(tenant_id=tenant_id, pk=credential_id)
        .values_list("secret_id", "encrypted_secret")
        .first()
    )
    if row is None:
        raise SourceError("The source's credential no longer exists")
    secret_id, envelope = row
    try:
        plaintext = get_kms().decrypt(
            bytes(envelope), context=credential_context(tenant_id=tenant_id, secret_id=str(secret_id))
        )
    except DecryptionError:
        raise SourceError("The source's credential could not be decrypted; store it again") from None
    except KmsError:
        raise SourceError("The key management service is unavailable", retryable=True) from None
    secret: dict[str, Any] = json.loads(plaintext)
    return secret


def _checked_subpath(subpath: str) -> str:
    if subpath.startswith("/"):
        raise SourceError("Invalid subpath: must be relative to the source location")
    try:
        return _clean_prefix(subpath, label="subpath")
    except ValueError as exc:
        raise SourceError(f"Invalid subpath: {exc}") from None


def _join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def _local_target(dest: Path, relative: str) -> Path:
    """Where an object with key ``relative`` (relative to the location) is downloaded. Object keys are
    tenant-controlled: a key with ``..`` or empty segments could write outside ``dest``, so it is
    refused."""
    try:
        clean = _clean_prefix(relative, label="object key")
    except ValueError:
        raise SourceError(f"Object {relative!r} has a key that cannot be stored safely") from None
    target = dest / clean
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def fetch_files(
    *, source: ResolvedSource, tenant_id: str, subpath: str = "", dest: Path, suffixes: tuple[str, ...]
) -> list[Path]:
    """Every file or object under ``location/subpath`` (recursively) whose name ends with one of
    ``suffixes``, in key order. ``file://`` returns the files in place (each checked to resolve inside
    the tenant's file root); ``s3://`` and Azure download into ``dest`` keeping the layout relative to
    the location. A missing folder or prefix gives ``[]``. ``SourceError`` on access errors."""
    relative = _checked_subpath(subpath)
    if source.scheme == "file":
        return _fetch_file(source, tenant_id, relative, suffixes)
    if source.scheme not in {"s3", "az"}:
        raise SourceError(f"A {source.scheme} source has no files to fetch")
    if source.credential_id is None:
        raise SourceError(f"The {source.provider} source has no credential: set credential_id on it")
    secret = credential_secret(tenant_id=tenant_id, credential_id=source.credential_id)
    dest.mkdir(parents=True, exist_ok=True)
    if source.scheme == "s3":
        return _fetch_s3(source, secret, relative, dest, suffixes)
    return _fetch_azure(source, secret, relative, dest, suffixes)


def _fetch_file(
    source: ResolvedSource, tenant_id: str, subpath: str, suffixes: tuple[str, ...]
) -> list[Path]:
    root = tenant_file_root(tenant_id)
    try:
        base = file_location_path(source.location, tenant_id=tenant_id)
    except ValueError:
        raise SourceError("The source folder is outside this tenant's export folder") from None
    folder = (base / subpath).resolve() if subpath else base
    if not folder.is_relative_to(root):
        raise SourceError("The source folder is outside this tenant's export folder")
    if not folder.is_dir():
        return []
    found: list[tuple[str, Path]] = []
    # followlinks=False: a symlinked folder is not walked; symlinked files are resolved and checked.
    for directory, _folders, files in os.walk(folder, followlinks=False):
        for name in files:
            if not name.endswith(suffixes):
                continue
            path = Path(directory) / name
            resolved = path.resolve()
            if not resolved.is_relative_to(root) or not resolved.is_file():
                raise SourceError(f"File {path.relative_to(folder).as_posix()!r} points outside the source")
            found.append((path.relative_to(folder).as_posix(), resolved))
    return [path for _key, path in sorted(found)]


def _s3_error(exc: Exception, where: str) -> SourceError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in {"NoSuchBucket"}:
            return SourceError(f"S3 bucket of {where} does not exist")
        if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}:
            return SourceError("The AWS credential was rejected (invalid or expired key)")
        if code in {"AccessDenied", "AllAccessDisabled"} or status == 403:
            return SourceError(
                f"Access denied reading {where}: the credential needs s3:ListBucket and s3:GetObject"
            )
        retryable = (
            status >= 500 or status in {408, 429} or code in {"SlowDown", "Throttling", "RequestTimeout"}
        )
        return SourceError(f"S3 error {code or status} reading {where}", retryable=retryable)
    return SourceError(f"Could not reach S3 reading {where}", retryable=True)


def _fetch_s3(
    source: ResolvedSource, secret: dict[str, Any], subpath: str, dest: Path, suffixes: tuple[str, ...]
) -> list[Path]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        location = s3_location(source.location)
    except ValueError:
        raise SourceError("The S3 source location is not valid any more") from None
    prefix = _join(location.prefix, subpath)
    where = f"s3://{_join(location.container, prefix)}"
    client = _s3_client(secret)
    try:
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=location.container, Prefix=prefix + "/" if prefix else ""
        ):
            keys += [
                item["Key"]
                for item in page.get("Contents", ())
                if not item["Key"].endswith("/") and item["Key"].endswith(suffixes)
            ]
        paths = []
        for key in sorted(keys):
            target = _local_target(dest, key[len(location.prefix) :] if location.prefix else key)
            client.download_file(location.container, key, os.fspath(target))
            paths.append(target)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, where) from None
    return paths


def azure_account(secret: dict[str, Any]) -> tuple[str, Any]:
    """The storage account name and the SDK credential (named key or SAS) of an Azure secret. The
    connection string's endpoints are not used: clients are built for the validated location only."""
    if "connection_string" in secret:
        fields = connection_string_fields(secret["connection_string"])
        account = fields.get("accountname", "")
        key, sas = fields.get("accountkey"), fields.get("sharedaccesssignature")
    else:
        account = secret["account_name"]
        key, sas = secret.get("account_key"), secret.get("sas_token")
    if key:
        from azure.core.credentials import AzureNamedKeyCredential

        return account, AzureNamedKeyCredential(account, key)
    return account, (sas or "").lstrip("?")


def azure_account_url(location: ObjectLocation, account: str) -> str:
    """The blob service URL for ``location``: the URL's own account endpoint, or for ``az://`` the
    configured emulator endpoint or the public one of the credential's account."""
    if location.account_url is not None:
        if location.account != account:
            raise SourceError(
                f"The credential is for storage account {account!r}, the source names {location.account!r}"
            )
        return location.account_url
    if settings.AZURE_BLOB_ENDPOINT:
        return f"{settings.AZURE_BLOB_ENDPOINT}/{account}"
    return f"https://{account}{AZURE_PUBLIC_SUFFIX}"


def azure_container_client(location: ObjectLocation, secret: dict[str, Any]) -> Any:
    """A ``ContainerClient`` for the location with the secret's credential, bounded timeouts/retries."""
    from azure.storage.blob import ContainerClient

    account, credential = azure_account(secret)
    return ContainerClient(
        account_url=azure_account_url(location, account),
        container_name=location.container,
        credential=credential,
        connection_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retry_total=CLIENT_RETRIES,
    )


def _azure_error(exc: Exception, where: str) -> SourceError:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    if isinstance(exc, ResourceNotFoundError):
        return SourceError(f"The Azure container of {where} does not exist")
    # A bad key or SAS shows as AuthenticationFailed (403), as an HttpResponseError or its subclass.
    if (
        isinstance(exc, ClientAuthenticationError)
        or getattr(exc, "error_code", None) == "AuthenticationFailed"
    ):
        return SourceError("The Azure credential was rejected (invalid key or SAS token)")
    if isinstance(exc, HttpResponseError):
        status = int(exc.status_code or 0)
        if status == 403:
            # Azurite (and Azure behind a firewall) answer a bad signature with AuthorizationFailure too.
            return SourceError(
                f"Access denied reading {where}: check the credential's key or SAS token "
                "and that it grants list and read"
            )
        return SourceError(
            f"Azure storage error {status} reading {where}", retryable=status >= 500 or status == 429
        )
    return SourceError(f"Could not reach Azure storage reading {where}", retryable=True)


def _fetch_azure(
    source: ResolvedSource, secret: dict[str, Any], subpath: str, dest: Path, suffixes: tuple[str, ...]
) -> list[Path]:
    from azure.core.exceptions import AzureError

    try:
        location = azure_location(source.location)
    except ValueError:
        raise SourceError("The Azure source location is not valid any more") from None
    prefix = _join(location.prefix, subpath)
    where = f"container {location.container!r}" + (f" under {prefix!r}" if prefix else "")
    try:
        container = azure_container_client(location, secret)
        with container:
            names = sorted(
                blob.name
                for blob in container.list_blobs(name_starts_with=prefix + "/" if prefix else None)
                if blob.name.endswith(suffixes)
            )
            paths = []
            for name in names:
                target = _local_target(dest, name[len(location.prefix) :] if location.prefix else name)
                with target.open("wb") as handle:
                    container.download_blob(name).readinto(handle)
                paths.append(target)
    except AzureError as exc:
        raise _azure_error(exc, where) from None
    except ValueError:
        # The SDK refuses a malformed key or SAS before sending anything.
        raise SourceError("The Azure credential is malformed") from None
    return paths


def upload_files(*, source: ResolvedSource, tenant_id: str, local_root: Path, paths: list[Path]) -> list[str]:
    """Upload ``paths`` (files under ``local_root``) to an object-store source, each at
    ``location/<path relative to local_root>``, with the source's credential. Returns the keys (blob
    names) written, in order. ``SourceError`` on access errors. Used to place sample exports where a
    tenant's source points; pipelines only read."""
    if source.scheme not in {"s3", "az"}:
        raise SourceError(f"A {source.scheme} source is not an object store")
    if source.credential_id is None:
        raise SourceError(f"The {source.provider} source has no credential: set credential_id on it")
    secret = credential_secret(tenant_id=tenant_id, credential_id=source.credential_id)
    relative = [path.relative_to(local_root).as_posix() for path in paths]
    if source.scheme == "s3":
        return _upload_s3(source, secret, local_root, relative)
    return _upload_azure(source, secret, local_root, relative)


def _s3_client(secret: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = settings.AWS_S3_ENDPOINT_URL
    return boto3.session.Session().client(
        "s3",
        aws_access_key_id=secret["access_key_id"],
        aws_secret_access_key=secret["secret_access_key"],
        aws_session_token=secret.get("session_token"),
        region_name=secret.get("region") or "us-east-1",
        endpoint_url=endpoint,
        config=Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"max_attempts": CLIENT_RETRIES, "mode": "standard"},
            # Emulators and S3-compatible stores answer on one host: path-style addressing.
            s3={"addressing_style": "path" if endpoint else "auto"},
        ),
    )


def _upload_s3(
    source: ResolvedSource, secret: dict[str, Any], local_root: Path, relative: list[str]
) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    location = s3_location(source.location)
    where = f"s3://{_join(location.container, location.prefix)}"
    client = _s3_client(secret)
    keys = [_join(location.prefix, name) for name in relative]
    try:
        for name, key in zip(relative, keys, strict=True):
            # put_object, not upload_file: the latter wraps errors in S3UploadFailedError, hiding the code.
            with (local_root / name).open("rb") as handle:
                client.put_object(Bucket=location.container, Key=key, Body=handle)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(exc, where) from None
    return keys


def _upload_azure(
    source: ResolvedSource, secret: dict[str, Any], local_root: Path, relative: list[str]
) -> list[str]:
    from azure.core.exceptions import AzureError

    location = azure_location(source.location)
    where = f"container {location.container!r}" + (f" under {location.prefix!r}" if location.prefix else "")
    names = [_join(location.prefix, name) for name in relative]
    try:
        with azure_container_client(location, secret) as container:
            for name, blob_name in zip(relative, names, strict=True):
                with (local_root / name).open("rb") as handle:
                    container.upload_blob(blob_name, handle, overwrite=True)
    except AzureError as exc:
        raise _azure_error(exc, where) from None
    return names
