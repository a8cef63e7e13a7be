"""Shared plumbing for the ratio benchmarks: a private environment (own Postgres database, VAR_DIR under
a tempdir, own Redis DB and queue), Django setup, cleanup, and the statistics and output helpers.

Nothing here writes into the repository. Override the service locations with ``BENCH_PG_ADMIN_URL``
(a database the bench may connect to for CREATE/DROP DATABASE) and ``BENCH_REDIS_URL``."""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# One database per benchmark process, so two benchmarks at once never drop each other's.
DB_NAME = f"convergence_bench_{os.getpid()}"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RESULT_PREFIX = "RESULT "


def database_url() -> str:
    """The bench database on the same server as ``PG_ADMIN_URL``."""
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{DB_NAME}"


def _exit_on_sigterm() -> None:
    # Turn SIGTERM into SystemExit so ``finally`` blocks (database drop, tempdir removal) still run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@contextmanager
def bench_environment(name: str) -> Iterator[dict[str, str]]:
    """Everything a benchmark needs, private to this run, removed afterwards: a tempdir (VAR_DIR,
    warehouse file, configs copy), a ``convergence_bench_{pid}`` database (created, then dropped), a
    private Celery queue on Redis DB 14 (purged). Sets the environment before Django is imported;
    yields the variables so a server subprocess can be given the same ones."""
    _exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix=f"convergence-bench-{name}-"))
    queue = f"bench-{name}-{os.getpid()}-{secrets.token_hex(4)}"
    configs = tmp / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    env = {
        "DJANGO_SETTINGS_MODULE": "convergence.settings.base",
        "ENVIRONMENT": "development",
        "DEBUG": "0",
        "DATABASE_URL": database_url(),
        "WAREHOUSE_URL": f"duckdb:///{tmp / 'warehouse.duckdb'}",
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_QUEUE": queue,
        "VAR_DIR": str(tmp / "var"),
        "KMS_BACKEND": "local",
        "KMS_LOCAL_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ADMIN_API_KEY": "bench-admin-" + secrets.token_urlsafe(24),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PIPELINE_CONFIGS_DIR": str(configs),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    created = False
    try:
        _create_database()
        created = True
        yield env
    finally:
        try:
            _django_close_connections()
            if created:
                _drop_database()
        finally:
            _purge_queue(queue)
            shutil.rmtree(tmp, ignore_errors=True)


def _admin_connection() -> Any:
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


def _create_database() -> None:
    with _admin_connection() as connection:
        # A leftover from an interrupted run of this benchmark; the name is the bench's own.
        connection.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{DB_NAME}"')


def _drop_database() -> None:
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def _django_close_connections() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def _purge_queue(queue: str) -> None:
    """Delete the private queue's keys (the queue, its priority sub-queues, kombu's binding)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    except Exception as exc:  # cleanup must not hide the benchmark's own outcome
        print(f"warning: could not purge Redis queue {queue}: {exc}", file=sys.stderr)


def setup_django() -> None:
    """django.setup() and migrate the bench database (after ``bench_environment`` set the env)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def create_tenant(tenant_id: str, *, plan: str = "SCALE", unlimited: bool = True) -> tuple[Any, str]:
    """A tenant made through the real service (onboarding pipeline creates its dataset) and one API
    key. With ``unlimited`` its plan's limits are raised to 10^9 so quota never refuses."""
    from tenants.actors import Actor
    from tenants.models import Plan
    from tenants.services import api_key_create, tenant_create

    if unlimited:
        Plan.objects.filter(code=plan).update(daily_limit=10**9, monthly_limit=10**9, concurrent_limit=10**9)
    tenant = tenant_create(tenant_id=tenant_id, plan=plan, actor=Actor.system("bench"))
    _key, raw = api_key_create(tenant=tenant, actor=Actor.system("bench"))
    return tenant, raw


# --- statistics and output ------------------------------------------------------------------------------
def timed_run(tenant: Any, pipeline: str, day: dt.date) -> float:
    """One pipeline run for ``day`` created and executed in this process (no quota, no broker), as the
    pipeline side of a benchmark; returns its seconds. A run that does not complete is an error."""
    from pipelines.models import PipelineRun, RunStatus
    from pipelines.services import run_create, run_execute
    from tenants.actors import Actor

    started = time.perf_counter()
    run, _usage = run_create(
        tenant=tenant,
        pipeline_name=pipeline,
        parameters={"date": day.isoformat()},
        actor=Actor.system("bench"),
        enforce_quota=False,
        enqueue=False,
    )
    status = run_execute(run_id=str(run.pk))
    elapsed = time.perf_counter() - started
    if status != RunStatus.COMPLETED:
        raise RuntimeError(f"bench run ended {status}: {PipelineRun.objects.get(pk=run.pk).error}")
    return elapsed


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A small left/right-aligned text table (numbers right-aligned)."""
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(headers[i]), *(len(row[i]) for row in text_rows)) for i in range(len(headers))]

    def line(cells: Sequence[str], numeric: Sequence[bool]) -> str:
        return "  ".join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    numeric = [all(_is_number(row[i]) for row in text_rows) and bool(text_rows) for i in range(len(headers))]
    out = [line(list(headers), numeric), line(["-" * width for width in widths], numeric)]
    out += [line(row, numeric) for row in text_rows]
    return "\n".join("  " + row for row in out)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x%"))
    except ValueError:
        return False
    return True


def result(line: str) -> None:
    """Print the benchmark's one-line figure (``run_all.py`` collects lines with this prefix)."""
    print(RESULT_PREFIX + line, flush=True)
