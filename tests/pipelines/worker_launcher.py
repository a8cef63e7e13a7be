"""Starts a real Celery worker for the tests, with the test-only processor registered.

Usage: python -m tests.pipelines.worker_launcher <celery worker args...>"""

from __future__ import annotations

import sys

from pipelines import registry

registry.PROCESSORS["test.counting"] = "tests.pipelines.processors_for_tests.CountingProcessor"

if __name__ == "__main__":
    from celery.bin.celery import main

    sys.argv = ["celery", "-A", "convergence", *sys.argv[1:]]
    main()
