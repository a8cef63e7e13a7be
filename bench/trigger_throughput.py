"""Trigger throughput (reliability.md R1, DESIGN.md "Performance"): the authenticated, quota-checked run
trigger vs a bare DRF endpoint in the same server process (target >= 0.6x throughput).

Server: ONE gunicorn process, ``--workers 1 --threads 8`` (gthread, keep-alive), serving the project's
URLs plus ``bench/bare-run/...`` (``bench_urls.py`` via ``bench_settings.py``), on the bench's own
Postgres database, Redis DB and private queue.

Numerator ``POST /api/v1/pipelines/run/{tenant}/gcp/bench/focus_daily``: X-API-Key lookup (SHA-256,
unique index) + tenant check, pipeline config load and parameter validation, quota admission (usage
row locked, counters updated, runs in flight counted), run INSERT, audit row, enqueue to Redis after
commit, quota headers. Denominator (R1: "the same DRF view with AllowAny, no quota, same insert")
``POST /bench/unguarded-run/...``: the same work without authentication and quota admission. A second,
stricter reference ``POST /bench/bare-run/...``: the same DRF stack with ``AllowAny`` doing only the run
INSERT and the 202 body, nothing else (no pipeline lookup, audit row or enqueue).

Load: a Python client with N keep-alive connections (one thread each, ``http.client``) sends a fixed
number of requests per side per round; sides alternate (ABAB..., order flipped every round) after a
warm-up. Between rounds (untimed) the bench marks the runs COMPLETED, as workers would, so the
in-flight count the quota check reads stays at one round's worth. The tenant is on SCALE with its
limits raised to 10^9, so quota never refuses.

Usage: ``.venv/bin/python bench/trigger_throughput.py [--rounds 5] [--requests 300] [--connections 8]``"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
from pipeline_overhead import PIPELINE, write_pipeline_config

TENANT_ID = "benchco"
TARGET = 0.6
THREADS = 8
BODY = json.dumps({"date": "2024-03-16"}).encode()


@dataclass
class Side:
    name: str
    path: str
    headers: dict[str, str]
    rps: list[float] = field(default_factory=list)
    cpu_ms_per_request: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.statuses.get(202, 0)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process from /proc (Linux); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(master_pid: int) -> float | None:
    """CPU time of the gunicorn master and its worker (the worker is the master's child)."""
    total = _cpu_seconds(master_pid)
    if total is None:
        return None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(after_name[1]) == master_pid:
            total += _cpu_seconds(int(stat.parent.name)) or 0.0
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    server_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "bench_settings"}
    server_env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--threads",
        str(THREADS),
        "--worker-class",
        "gthread",
        "--keep-alive",
        "60",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(benchlib.REPO_ROOT),
        "--pythonpath",
        f"{benchlib.REPO_ROOT},{benchlib.BENCH_DIR}",
        "--log-level",
        "warning",
        "convergence.wsgi:application",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop_server(process)
    raise RuntimeError("gunicorn did not become ready within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # graceful: the master stops its worker
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class Client:
    """N keep-alive connections, one thread each, sharing a fixed request count."""

    def __init__(self, port: int, connections: int, server_pid: int) -> None:
        self.port = port
        self.server_pid = server_pid
        self.size = connections
        self.pools: dict[str, list[http.client.HTTPConnection]] = {}

    def _connections(self, side: Side) -> list[http.client.HTTPConnection]:
        if side.name not in self.pools:
            self.pools[side.name] = [
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=60) for _ in range(self.size)
            ]
        return self.pools[side.name]

    def run(self, side: Side, count: int, *, record: bool = True) -> None:
        connections = self._connections(side)
        remaining = [count]
        lock = threading.Lock()
        start = threading.Barrier(len(connections) + 1)
        latencies: list[list[float]] = [[] for _ in connections]
        statuses: list[dict[int, int]] = [{} for _ in connections]
        headers = {"Content-Type": "application/json", **side.headers}

        def worker(index: int) -> None:
            connection = connections[index]
            start.wait()
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                began = time.perf_counter()
                try:
                    connection.request("POST", side.path, body=BODY, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    code = response.status
                    if response.will_close:
                        connection.close()
                except (OSError, http.client.HTTPException):
                    code = 0  # counted as a failure; reconnects on the next request
                    connection.close()
                latencies[index].append((time.perf_counter() - began) * 1000)
                statuses[index][code] = statuses[index].get(code, 0) + 1

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(connections))]
        for thread in threads:
            thread.start()
        cpu_before = server_cpu_seconds(self.server_pid)  # the threads wait at the barrier meanwhile
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        cpu_after = server_cpu_seconds(self.server_pid)
        for per_thread in statuses:
            for code, number in per_thread.items():
                side.statuses[code] = side.statuses.get(code, 0) + number
        if record:
            side.rps.append(count / elapsed)
            if cpu_before is not None and cpu_after is not None:
                side.cpu_ms_per_request.append((cpu_after - cpu_before) * 1000 / count)
            side.latencies_ms.extend(value for per_thread in latencies for value in per_thread)

    def close(self) -> None:
        for pool in self.pools.values():
            for connection in pool:
                connection.close()


def complete_pending_runs() -> None:
    """What workers would do between rounds: finish the runs, so runs in flight stay bounded."""
    from pipelines.models import PipelineRun, RunStatus

    PipelineRun.objects.filter(status=RunStatus.PENDING).update(status=RunStatus.COMPLETED)


def queued_messages(queue: str) -> int:
    import redis

    client = redis.Redis.from_url(benchlib.REDIS_URL)
    try:
        total = 0
        for key in client.scan_iter(match=f"{queue}*", count=1000):
            if client.type(key) == b"list":
                total += int(client.llen(key))
        return total
    finally:
        client.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _median_ms(function: Callable[[], object], count: int = 100) -> float:
    function()
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        function()
        samples.append((time.perf_counter() - began) * 1000)
    return benchlib.median(samples)


def profile_trigger(tenant: Any, trigger: Side, bare: Side, raw_key: str, count: int = 200) -> None:
    """In this process (the server is stopped by now): wall time of the trigger's parts, then a
    cProfile of the trigger view through Django's test client (middleware included)."""
    from django.test import Client as DjangoClient
    from django.test.utils import override_settings

    from pipelines.models import PipelineRun, RunStatus
    from pipelines.services import run_create, run_enqueue, tenant_pipeline_get
    from tenants import keys
    from tenants.actors import Actor
    from tenants.models import TenantApiKey

    client = DjangoClient()
    actor = Actor.system("bench")
    key_hash = keys.hash_key(raw_key)

    def post(side: Side) -> None:
        headers = {"HTTP_X_API_KEY": raw_key} if side is trigger else {}
        response = client.post(side.path, BODY, content_type="application/json", **headers)
        assert response.status_code == 202, response.content

    def auth_query() -> None:
        TenantApiKey.objects.select_related("tenant__subscription__plan", "tenant__usage").filter(
            key_hash=key_hash
        ).first()

    def create() -> None:
        parameters = json.loads(BODY)
        run_create(tenant=tenant, pipeline_name=PIPELINE, parameters=parameters, actor=actor, enqueue=False)

    run_id = str(PipelineRun.objects.values_list("pk", flat=True).first())
    parts = [
        ("auth: key lookup (select_related query)", auth_query),
        ("pipeline config load (tenant_pipeline_get)", lambda: tenant_pipeline_get(name=PIPELINE)),
        ("run_create, no enqueue (config load + quota txn)", create),
        ("enqueue alone (run_enqueue)", lambda: run_enqueue(run_id=run_id)),
        (
            "bare insert (PipelineRun.objects.create)",
            lambda: PipelineRun.objects.create(
                tenant=tenant, pipeline=PIPELINE, pipeline_id="bench", status=RunStatus.COMPLETED
            ),
        ),
        ("full trigger request (test client)", lambda: post(trigger)),
    ]
    rows = [[label, f"{_median_ms(function):.2f}"] for label, function in parts]
    with override_settings(ROOT_URLCONF="bench_urls"):
        rows.append(["full bare request (test client)", f"{_median_ms(lambda: post(bare)):.2f}"])
    print("\nIn-process wall time of the trigger's parts (median of 100, ms):")
    print(benchlib.table(["part", "median_ms"], rows))

    PipelineRun.objects.filter(status=RunStatus.PENDING).update(status=RunStatus.COMPLETED)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        post(trigger)
    profiler.disable()
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)
        print(f"\ncProfile of {count} trigger requests in-process, by {order}, top 30:")
        print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side (>= 3)")
    parser.add_argument("--requests", type=int, default=300, help="requests per side per round")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive client connections")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile 200 trigger requests in-process"
    )
    args = parser.parse_args()
    rounds = max(args.rounds, 3)

    with benchlib.bench_environment("trigger") as env:
        benchlib.setup_django()
        from django.conf import settings

        from pipelines.models import PipelineRun
        from tenants.models import AuditLog

        write_pipeline_config()
        tenant, raw_key = benchlib.create_tenant(TENANT_ID)
        provider, domain, name = PIPELINE.split("/")
        trigger = Side(
            "trigger",
            f"/api/v1/pipelines/run/{TENANT_ID}/{provider}/{domain}/{name}",
            {"X-API-Key": raw_key},
        )
        unguarded = Side("unguarded", f"/bench/unguarded-run/{TENANT_ID}/{provider}/{domain}/{name}", {})
        bare = Side("bare", f"/bench/bare-run/{TENANT_ID}/{provider}/{domain}/{name}", {})
        sides = (trigger, unguarded, bare)
        port = free_port()
        log_path = Path(settings.VAR_DIR) / "gunicorn.log"
        server = start_server(env, port, log_path)
        client = Client(port, args.connections, server.pid)
        try:
            print(
                f"gunicorn 1 process, --workers 1 --threads {THREADS} (gthread); client: "
                f"{args.connections} keep-alive connections, {args.requests} requests per side per round, "
                f"{rounds} rounds after a warm-up",
                flush=True,
            )
            for side in sides:
                client.run(side, min(args.requests, 200), record=False)
            complete_pending_runs()
            for index in range(rounds):
                order = sides if index % 2 == 0 else tuple(reversed(sides))
                for side in order:
                    client.run(side, args.requests)
                    complete_pending_runs()
        finally:
            client.close()
            stop_server(server)

        ratios = [t / u for t, u in zip(trigger.rps, unguarded.rps, strict=True)]
        ratio = benchlib.median(ratios)
        verdict = "meets" if ratio >= TARGET else "MISSES"
        p50_t, p50_u = percentile(trigger.latencies_ms, 0.5), percentile(unguarded.latencies_ms, 0.5)
        benchlib.result(
            f"trigger_throughput: {ratio:.3f}x trigger / same view without auth+quota requests/s "
            f"(R1; median of {rounds} round ratios; "
            f"medians {benchlib.median(trigger.rps):.0f} vs {benchlib.median(unguarded.rps):.0f} req/s; "
            f"p50 {p50_t:.1f} vs {p50_u:.1f} ms; one gunicorn process, {THREADS} threads; "
            f"target >= {TARGET}x: {verdict})"
        )
        bare_ratios = [t / b for t, b in zip(trigger.rps, bare.rps, strict=True)]
        p50_b = percentile(bare.latencies_ms, 0.5)
        print(
            f"  stricter reference: {benchlib.median(bare_ratios):.3f}x trigger / bare insert-only DRF "
            f"endpoint (medians {benchlib.median(trigger.rps):.0f} vs {benchlib.median(bare.rps):.0f} req/s)"
        )
        rows = []
        for side in sides:
            rows.append(
                [
                    side.name,
                    f"{benchlib.median(side.rps):.0f}",
                    f"{min(side.rps):.0f}",
                    f"{max(side.rps):.0f}",
                    f"{percentile(side.latencies_ms, 0.5):.1f}",
                    f"{percentile(side.latencies_ms, 0.99):.1f}",
                    f"{benchlib.median(side.cpu_ms_per_request):.1f}" if side.cpu_ms_per_request else "n/a",
                    len(side.rps),
                ]
            )
        headers = ["side", "median_rps", "min_rps", "max_rps", "p50_ms", "p99_ms", "cpu_ms/req", "rounds"]
        print(benchlib.table(headers, rows))
        print(f"  round ratios (trigger/unguarded): {' '.join(f'{value:.3f}' for value in ratios)}")
        print(
            f"  added p50 latency: {p50_t - p50_b:+.1f} ms per trigger request "
            f"(at {args.connections} concurrent connections, queueing included)"
        )

        # Correctness: every response 202; one run row per 202; one audit row and one message per trigger.
        runs = PipelineRun.objects.count()
        audits = AuditLog.objects.filter(action="run.create").count()
        messages = queued_messages(env["CELERY_QUEUE"])
        accepted = trigger.accepted + unguarded.accepted + bare.accepted
        audited = trigger.accepted + unguarded.accepted
        print(
            f"  check: statuses trigger {dict(sorted(trigger.statuses.items()))}, unguarded "
            f"{dict(sorted(unguarded.statuses.items()))}, bare {dict(sorted(bare.statuses.items()))}; "
            f"runs table {runs} rows = {accepted} 202s; run.create audit rows {audits} = {audited}; "
            f"queued messages {messages} = {audited}"
        )
        ok = (
            all(set(side.statuses) == {202} for side in sides)
            and runs == accepted
            and audits == audited
            and messages == audited
        )
        if not ok:
            print("  CHECK FAILED: see the statuses and counts above", file=sys.stderr)
            print(log_path.read_text()[-3000:], file=sys.stderr)
            return 1
        print("  check: OK")
        if args.profile:
            profile_trigger(tenant, trigger, bare, raw_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
