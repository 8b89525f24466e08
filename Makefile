# `make run` and `make test` work on a fresh clone: they create .venv, install
# ordersys with its development tools, and start PostgreSQL, RabbitMQ and Redis
# when one is down.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CODE := $(wildcard src tests examples bench)

.PHONY: run test lint typecheck unit services bench clean

$(BIN)/ordersys: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

services:
	bash .ci/services

run: $(BIN)/ordersys services
	$(BIN)/ordersys doctor
	$(BIN)/ordersys up --demo 10

lint: $(BIN)/ordersys
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(BIN)/ordersys
	$(BIN)/mypy --strict src

test: $(BIN)/ordersys services lint typecheck
	$(BIN)/pytest

bench: $(BIN)/ordersys services
	$(BIN)/python -m bench eventstore
	$(BIN)/python -m bench messaging
	$(BIN)/python -m bench gateway
	$(BIN)/python -m bench system

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
