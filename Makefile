# CML Cloud Manager — developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run run-api run-worker run-all run-split test test-sqlite test-postgres test-e2e lint fmt typecheck bench bench-jobs bench-sse docker-build compose-up compose-down helm-lint deploy-check clean
IMAGE ?= cml-cloud-manager:latest

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the app with its dev and sandbox extras

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

test: $(STAMP) ## the whole suite on SQLite, then on PostgreSQL (+ Redis)
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: $(STAMP) ## the suite on SQLite
	TEST_DATABASE=sqlite $(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP) ## the suite on PostgreSQL 127.0.0.1:5432 and Redis 127.0.0.1:6379
	TEST_DATABASE=postgres $(BIN)/pytest $(PYTEST_ARGS)

test-e2e: $(STAMP) ## only the tests that start real processes, on both backends
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

bench: $(STAMP) ## the benchmark suite (~15 min; --quick: make bench BENCH_ARGS=--quick) → bench/results/<date>.md
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

deploy-check: $(STAMP) ## every deployment check (compose, Dockerfile, systemd, Helm, settings coverage)
	TEST_DATABASE=sqlite $(BIN)/pytest tests/deploy $(PYTEST_ARGS)

clean: ## remove the virtual environment and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
