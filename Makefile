# Enclave: `make run` installs and serves on the bundled defaults; `make check` runs
# format, lint, types and tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DOCS ?= examples/docs

.PHONY: install run check fmt lint types test bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	# CPU torch first, so nothing pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# unstructured's fast PDF path imports this package; its model dependencies are not needed.
	$(BIN)/pip install -q --no-deps unstructured-inference==1.6.14
	$(BIN)/pip install -q -e '.[dev]'

run: install
	$(BIN)/enclave ingest $(DOCS)
	$(BIN)/enclave serve

fmt:
	$(BIN)/ruff format .

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types:
	$(BIN)/mypy enclave models store ingest server eval

test:
	$(BIN)/python -m pytest

check: install lint types test
