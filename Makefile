# `make run`, `make up` and `make test` work on a fresh clone: they create .venv
# and install ordersys with every extra and its development tools; `make up` and
# `make test` also start PostgreSQL, RabbitMQ and Redis when one is down.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CODE := $(wildcard src tests examples bench)

.PHONY: run up test lint typecheck unit services bench clean

$(BIN)/ordersys: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $@

services:
	bash .ci/services

# The whole system in one process on SQLite files: no servers needed.
run: $(BIN)/ordersys
	$(BIN)/ordersys doctor --embedded
	$(BIN)/ordersys up --embedded --demo 10

# Every service in a process of its own, over PostgreSQL, RabbitMQ and Redis.
up: $(BIN)/ordersys services
	$(BIN)/ordersys doctor
	$(BIN)/ordersys up --demo 10

lint: $(BIN)/ordersys
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(BIN)/ordersys
	$(BIN)/mypy --strict src

test: $(BIN)/ordersys services lint typecheck
	$(BIN)/pytest

# bench system's load comes from wrk (it refuses to run without): installed
# here when missing and we may, as .ci/run does.
bench: $(BIN)/ordersys services
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing wrk"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends wrk >/dev/null; }; \
	  else echo "wrk is not installed (bench system needs it)"; fi; }
	$(BIN)/python -m bench eventstore
	$(BIN)/python -m bench messaging
	$(BIN)/python -m bench gateway
	$(BIN)/python -m bench system

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
