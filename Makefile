# Convergence: `make run` (everything local, embedded defaults) and `make test` (Postgres + Redis).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT
# Days of generated demo cost data `make run` loads for the demo tenant (0: none).
DEMO_DAYS ?= 30

.DEFAULT_GOAL := help
.PHONY: help install run test check lint typecheck migrations-check validate bq-emulator azurite services bench clean

help:
	@echo "make run     set up everything (venv, DB, warehouse, admin, demo tenant with 30 days of GCP/AWS/Azure"
	@echo "             cost data; DEMO_DAYS=0 skips it) and start web+worker+beat"
	@echo "make test    the whole test suite on Postgres + Redis (starts them if needed)"
	@echo "make check   ruff, mypy, makemigrations --check, validate_pipelines, tests"
	@echo "make bench   ratio benchmarks (see bench/README.md)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py setup_local $(if $(filter 0,$(DEMO_DAYS)),--skip-demo-data,--demo-days $(DEMO_DAYS))
	$(VENV)/bin/honcho start -f Procfile -p $(PORT)

bq-emulator:
	bash .ci/install-bq-emulator.sh

azurite:
	bash .ci/install-azurite.sh

services:
	bash .ci/services.sh

test: install bq-emulator azurite services
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy convergence tenants pipelines billing

migrations-check: install services
	DJANGO_SETTINGS_MODULE=convergence.settings.test $(PY) manage.py makemigrations --check --dry-run

validate: install
	$(PY) manage.py validate_pipelines

check: lint typecheck migrations-check validate test

bench: install services
	$(PY) bench/run_all.py

clean:
	rm -rf var/ .bq-emulator/ .azurite/
