# Alliance Workflows — the two quick-start commands are `make dev` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup dev test lint services-start services-stop schemas openapi histories bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Temporal dev server (Web UI on :8233), Kafka broker, worker, and the demo projects; Ctrl-C stops everything.
dev: setup
	$(BIN)/alliance dev

# Lint and type checks, then the whole test suite against real servers (Kafka is started and stopped by the tests).
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas workflows activities streams alliance
	$(BIN)/pytest

services-start: setup
	bash deploy/local/services.sh start

services-stop:
	bash deploy/local/services.sh stop

# Rewrite the checked-in JSON Schemas from the models.
schemas: setup
	$(BIN)/python -m schemas.contract

# Rewrite the checked-in OpenAPI document of the API.
openapi: setup
	$(BIN)/python -m alliance.api

# Re-record the workflow histories that the replay tests replay.
histories: setup
	$(BIN)/python -m tests.histories.record

# The benchmark suite (docs/performance.md): starts the local servers, prints each table, leaves the servers running.
bench: setup
	bash deploy/local/services.sh start
	$(BIN)/python -m bench.lifecycle --projects 50 200 1000
	$(BIN)/python -m bench.publishing
	$(BIN)/python -m bench.memory --open 1 100 1000
	$(BIN)/python -m bench.streams
	$(BIN)/python -m bench.replay
