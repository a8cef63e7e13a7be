"""Settings, read only from the environment. With no environment at all the embedded defaults apply:
SQLite, DuckDB, a filesystem broker and a local KMS key, all under ``VAR_DIR``."""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from convergence.env import env_bool, env_choice, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

ENVIRONMENT = env_choice("ENVIRONMENT", "development", ("development", "staging", "production"))
ENV_SUFFIX = {"development": "local", "staging": "stage", "production": "prod"}[ENVIRONMENT]
DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if len(key) < 32 and not DEBUG:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters")
        return key
    if ENVIRONMENT != "development":
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required outside development")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally (no CDN)
    "django_celery_beat",
    "convergence.apps.ConvergenceConfig",
    "tenants",
    "pipelines",
    "billing",
]

MIDDLEWARE = [
    "convergence.api.middleware.RequestIdMiddleware",
    "convergence.api.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "convergence.urls"
APPEND_SLASH = False
WSGI_APPLICATION = "convergence.wsgi.application"

# Django HTML templates live inside the apps (admin overrides). The top-level templates/ folder holds
# YAML step templates and must never be a Django template directory.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- API -------------------------------------------------------------------------------------------
MAX_BODY_BYTES = env_int("MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
ADMIN_API_KEY_PATH = VAR_DIR / "admin_api_key"


def _admin_api_key() -> str | None:
    key = env_str("ADMIN_API_KEY")
    if key:
        if len(key) < 16:
            raise ImproperlyConfigured("ADMIN_API_KEY must be at least 16 characters")
        return key
    # Development only: `make run` generates one into var/ (see manage.py setup_local).
    if ENVIRONMENT == "development" and ADMIN_API_KEY_PATH.is_file():
        return ADMIN_API_KEY_PATH.read_text().strip() or None
    return None


ADMIN_API_KEY = _admin_api_key()
API_KEY_LAST_USED_INTERVAL_S = env_int("API_KEY_LAST_USED_INTERVAL_S", 60, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["convergence.api.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "convergence.api.exceptions.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "convergence.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%SZ",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Convergence API",
    "DESCRIPTION": "Multi-tenant pipelines for cloud cost and compliance analytics.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PlanCodeEnum": "tenants.models.PlanCode",
        "SubscriptionStatusEnum": "tenants.models.SubscriptionStatus",
    },
}

# --- Warehouse, KMS, pipelines ---------------------------------------------------------------------
WAREHOUSE_URL = env_str("WAREHOUSE_URL") or f"duckdb:///{VAR_DIR / 'warehouse.duckdb'}"
BIGQUERY_API_ENDPOINT = env_str("BIGQUERY_API_ENDPOINT") or None
WAREHOUSE_MAX_BYTES_BILLED = env_int("WAREHOUSE_MAX_BYTES_BILLED", 100 * 1024**3, minimum=10 * 1024**2)
WAREHOUSE_LOCK_TIMEOUT_S = env_int("WAREHOUSE_LOCK_TIMEOUT_S", 60, minimum=1)
CENTRAL_DATASET = env_str("CENTRAL_DATASET") or "tenants"
# Mirror of the control plane into the central dataset (convergence/mirror/): a drain every
# MIRROR_INTERVAL_S; /health/ready reports "lagging" when the oldest undelivered change is older than
# MIRROR_LAG_THRESHOLD_S.
MIRROR_INTERVAL_S = env_int("MIRROR_INTERVAL_S", 10, minimum=1)
MIRROR_LAG_THRESHOLD_S = env_int("MIRROR_LAG_THRESHOLD_S", 120, minimum=1)
MIRROR_BATCH_SIZE = env_int("MIRROR_BATCH_SIZE", 5000, minimum=1)
MIRROR_MAX_BATCHES = env_int("MIRROR_MAX_BATCHES", 20, minimum=1)
MIRROR_ROWS_PER_STATEMENT = env_int("MIRROR_ROWS_PER_STATEMENT", 1000, minimum=1)

KMS_BACKEND = env_choice("KMS_BACKEND", "local", ("local", "gcp"))
KMS_LOCAL_KEY = env_str("KMS_LOCAL_KEY") or None
KMS_LOCAL_KEY_PATH = VAR_DIR / "kms_local.key"
GCP_KMS_KEY_NAME = env_str("GCP_KMS_KEY_NAME") or None
GCP_KMS_ENDPOINT = env_str("GCP_KMS_ENDPOINT") or None
if KMS_BACKEND == "gcp" and not GCP_KMS_KEY_NAME:
    raise ImproperlyConfigured("KMS_BACKEND=gcp requires GCP_KMS_KEY_NAME")
if ENVIRONMENT == "production" and KMS_BACKEND == "local" and not env_bool("ALLOW_LOCAL_KMS", False):
    raise ImproperlyConfigured("production refuses KMS_BACKEND=local unless ALLOW_LOCAL_KMS=1")

PIPELINE_CONFIGS_DIR = Path(env_str("PIPELINE_CONFIGS_DIR") or BASE_DIR / "configs").resolve()
PIPELINE_TEMPLATES_DIR = Path(env_str("PIPELINE_TEMPLATES_DIR") or BASE_DIR / "templates").resolve()
SOURCE_FILE_ROOT = Path(env_str("SOURCE_FILE_ROOT") or VAR_DIR / "exports").resolve()
# Object-store endpoints for emulators or S3-compatible stores (unset: the providers' public endpoints).
# Tenants can never choose an endpoint: a source or credential may name only these or the provider's own.
AWS_S3_ENDPOINT_URL = (env_str("AWS_S3_ENDPOINT_URL") or "").rstrip("/") or None
AZURE_BLOB_ENDPOINT = (env_str("AZURE_BLOB_ENDPOINT") or "").rstrip("/") or None
RUN_RETENTION_DAYS = env_int("RUN_RETENTION_DAYS", 90, minimum=1)
RUN_LEASE_S = env_int("RUN_LEASE_S", 120, minimum=2)
RUN_HEARTBEAT_S = env_int("RUN_HEARTBEAT_S", 15, minimum=1)
RUN_MAX_ATTEMPTS = env_int("RUN_MAX_ATTEMPTS", 3, minimum=1)
if RUN_HEARTBEAT_S * 2 > RUN_LEASE_S:
    raise ImproperlyConfigured("RUN_HEARTBEAT_S must be at most half of RUN_LEASE_S")
# A PENDING run still unclaimed this long after it was sent is sent again (its message may be lost).
RUN_RESEND_AFTER_S = env_int("RUN_RESEND_AFTER_S", 600, minimum=10)
# Scheduler (pipelines/scheduler.py): due schedules claimed per tick transaction, and beat intervals.
SCHEDULER_BATCH_SIZE = env_int("SCHEDULER_BATCH_SIZE", 500, minimum=1)
SCHEDULER_TICK_INTERVAL_S = env_int("SCHEDULER_TICK_INTERVAL_S", 30, minimum=1)
SCHEDULER_DISPATCH_INTERVAL_S = env_int("SCHEDULER_DISPATCH_INTERVAL_S", 10, minimum=1)
SCHEDULER_REAP_INTERVAL_S = env_int("SCHEDULER_REAP_INTERVAL_S", 30, minimum=1)

# --- Celery ----------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Unacknowledged messages of a dead worker come back after the visibility timeout; kombu sweeps
    # for them every interval x throttle seconds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 3600, minimum=1),
        "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL_S", 10, minimum=1),
        "unacked_restore_throttle": env_int("CELERY_UNACKED_RESTORE_THROTTLE", 10, minimum=1),
    }
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE") or "celery"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT_S", 3600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = max(CELERY_TASK_TIME_LIMIT - 30, 5)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Beat holds system entries only (never one entry per tenant schedule: the tick reads the schedules
# table). The DatabaseScheduler upserts these by name at start and leaves staff-made entries alone.
# System tasks go to their own queue so long pipeline runs cannot starve the tick (Procfile ``system``).
SCHEDULER_QUEUE = env_str("SCHEDULER_QUEUE") or "system"
_system = {"queue": SCHEDULER_QUEUE}
CELERY_BEAT_SCHEDULE = {
    "scheduler-tick": {
        "task": "pipelines.scheduler_tick",
        "schedule": float(SCHEDULER_TICK_INTERVAL_S),
        "options": {**_system, "expires": SCHEDULER_TICK_INTERVAL_S},
    },
    "scheduler-dispatch": {
        "task": "pipelines.process_queue",
        "schedule": float(SCHEDULER_DISPATCH_INTERVAL_S),
        "options": {**_system, "expires": SCHEDULER_DISPATCH_INTERVAL_S},
    },
    "scheduler-reap": {
        "task": "pipelines.reap_runs",
        "schedule": float(SCHEDULER_REAP_INTERVAL_S),
        "options": {**_system, "expires": SCHEDULER_REAP_INTERVAL_S},
    },
    "quota-reset": {
        "task": "pipelines.reset_quotas",
        "schedule": crontab(minute="0", hour="0"),
        "options": _system,
    },
    "run-retention": {
        "task": "pipelines.purge_expired_runs",
        "schedule": crontab(minute="30", hour="0"),
        "options": _system,
    },
    "mirror-drain": {
        "task": "convergence.mirror_drain",
        "schedule": float(MIRROR_INTERVAL_S),
        "options": {**_system, "expires": MIRROR_INTERVAL_S},
    },
}

# --- Logging ---------------------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "convergence.logging.RedactSecretsFilter"},
        "context": {"()": "convergence.logging.ContextFilter"},
    },
    "formatters": {
        "structured": {
            "format": "%(asctime)s %(levelname)s %(name)s request=%(request_id)s tenant=%(tenant)s "
            "run=%(run)s step=%(step)s %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"level": "WARNING"},
        # The object-store SDKs log every HTTP request at INFO (azure) or DEBUG (botocore, which includes
        # signed headers): billing-source reads stay quiet unless something goes wrong.
        "azure": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "s3transfer": {"level": "WARNING"},
    },
}

# Admin shows a new key once through a message: keep messages in the (signed) cookie, never in the
# session table, so the plaintext never reaches the database.
CSRF_FAILURE_VIEW = "convergence.api.exceptions.csrf_failure"
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if ENVIRONMENT == "production":
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
DEFAULT_EXCEPTION_REPORTER_FILTER = "convergence.logging.SafeExceptionReporterFilter"
