# CML Cloud Manager — developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# uv installs exactly what uv.lock pins; its own version is pinned in pyproject.toml's dev extras too (a test checks).
UV_VERSION := 0.13.9
UV     := UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv

.DEFAULT_GOAL := help
.PHONY: help install uv-tool lock deps run run-api run-worker run-all run-split test test-sqlite test-postgres test-e2e lint fmt typecheck bench bench-jobs bench-sse docker-build compose-up compose-down helm-lint deploy-check clean
IMAGE ?= cml-cloud-manager:latest

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# uv itself, in .venv: `make lock` needs it without the sync, which refuses a lock file that is out of date.
uv-tool:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test "$$($(BIN)/uv --version 2>/dev/null)" = "uv $(UV_VERSION)" || $(BIN)/pip install --quiet uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock
	$(MAKE) --no-print-directory uv-tool
	$(UV) sync --locked --extra dev --python $(BIN)/python || { echo "uv.lock does not match pyproject.toml: run make lock" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP) ## create .venv with the exact versions in uv.lock (the app, its dev and sandbox extras)

lock: uv-tool ## re-resolve uv.lock after editing pyproject.toml (or to take new releases: make lock LOCK_ARGS=--upgrade)
	$(UV) lock $(LOCK_ARGS)
	$(UV) sync --locked --extra dev --python $(BIN)/python
	touch $(STAMP)

deps: ## install (apt, as root) and start what the tests need outside Python: Chromium, PostgreSQL, Redis, promtool, systemd-analyze, nginx
	bash scripts/test-deps.sh

run: $(STAMP) ## the whole product locally: sandbox (AWS emulator + CML simulator) + api + worker
	$(BIN)/cml-cloud-manager up --sandbox

run-api: $(STAMP) ## the API process only (no background jobs)
	$(BIN)/cml-cloud-manager api

run-worker: $(STAMP) ## the worker process only (jobs + commands), health on :8081
	$(BIN)/cml-cloud-manager worker --health-port 8081

run-all: $(STAMP) ## API and worker in one process (rollback mode)
	$(BIN)/cml-cloud-manager all

run-split: $(STAMP) ## API and worker side by side in tmux
	tmux new-session -d -s cml-cloud-manager '$(BIN)/cml-cloud-manager api' \; \
	  split-window -h '$(BIN)/cml-cloud-manager worker --health-port 8081' \; attach

test: $(STAMP) deps ## set up (deps, install), then the whole suite on SQLite and again on PostgreSQL (+ Redis)
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: $(STAMP) deps ## the suite on SQLite
	TEST_DATABASE=sqlite $(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP) deps ## the suite on PostgreSQL 127.0.0.1:5432 and Redis 127.0.0.1:6379
	TEST_DATABASE=postgres $(BIN)/pytest $(PYTEST_ARGS)

test-e2e: $(STAMP) deps ## only the tests that start real processes, on both backends
	TEST_DATABASE=sqlite $(BIN)/pytest -m e2e $(PYTEST_ARGS)
	TEST_DATABASE=postgres $(BIN)/pytest -m e2e $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

fmt: $(STAMP) ## format and fix imports
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

bench: $(STAMP) ## the benchmark suite (~40 min, on a quiet machine; smoke run: make bench BENCH_ARGS=--quick) → bench/results/<date>.md
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-jobs: $(STAMP) ## time worker-metrics over 1,000 simulated workers (target <= 10 s)
	$(BIN)/python -m bench.jobs_metrics --workers 1000

bench-sse: $(STAMP) ## SSE latency, relay throughput and memory per client (PostgreSQL + Redis)
	$(BIN)/python -m bench.sse_fanout

docker-build: ## build the container image (IMAGE=...)
	docker build -t $(IMAGE) .

compose-up: ## the whole stack in Docker → http://localhost:8020/
	CML_IMAGE=$(IMAGE) docker compose up -d --build

compose-down: ## stop the Docker stack (keeps volumes)
	docker compose --profile observability down

helm-lint: $(STAMP) ## lint and render the Helm chart with Helm's engine
	$(BIN)/python deploy/helm/lint.py

deploy-check: $(STAMP) deps ## every deployment check (compose, Dockerfile, systemd, Helm, settings coverage)
	TEST_DATABASE=sqlite $(BIN)/pytest tests/deploy $(PYTEST_ARGS)

clean: ## remove the virtual environment and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
