"""Run every ratio benchmark (``make bench``): each as its own subprocess, output streamed, then a
summary of their one-line figures. Exits non-zero only if a benchmark crashed (non-zero exit or no
figure); a missed target is reported, never a failure. Nothing is written into the repository.

Usage: ``.venv/bin/python bench/run_all.py [name ...]`` (names without ``.py``; default: all)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULT_PREFIX = "RESULT "
BENCHMARKS = ("pipeline_overhead", "trigger_throughput", "focus_normalize", "tick_throughput", "tick_scaling")


def run(name: str) -> tuple[int, list[str], float]:
    """Run one benchmark, echoing its output; returns (exit code, figure lines, seconds)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    figures: list[str] = []
    process = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / f"{name}.py")],
        cwd=BENCH_DIR.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.startswith(RESULT_PREFIX):
            figures.append(line[len(RESULT_PREFIX) :].rstrip("\n"))
    code = process.wait()
    return code, figures, time.monotonic() - started


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    summary: list[tuple[str, int, list[str], float]] = []
    for name in names:
        print(f"=== {name} ===", flush=True)
        code, figures, seconds = run(name)
        summary.append((name, code, figures, seconds))
        print(flush=True)
    crashed = [name for name, code, figures, _ in summary if code != 0 or not figures]
    print("=== summary ===")
    for name, code, figures, seconds in summary:
        if code != 0 or not figures:
            print(f"{name}: CRASHED (exit {code}, {len(figures)} figure lines) after {seconds:.0f} s")
        for figure in figures:
            print(f"{figure}  [{seconds:.0f} s]")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
