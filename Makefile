# Enclave: `make run` installs and serves on the bundled defaults; `make check` runs
# format, lint, types and tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DOCS ?= examples/docs

.PHONY: install run check fmt lint types test bench browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	# CPU torch first, so nothing pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# unstructured's fast PDF path imports this package; its model dependencies are not needed.
	$(BIN)/pip install -q --no-deps unstructured-inference==1.6.14
	$(BIN)/pip install -q -e '.[dev]'

# Ingest DOCS (exit 1 = some files failed, listed with their reasons: serve anyway), make an
# admin key on first run (printed once), then serve on http://127.0.0.1:8000.
run: install
	$(BIN)/enclave ingest $(DOCS) || [ $$? -eq 1 ]
	@$(BIN)/enclave keys list --json | grep -q '"name"' || $(BIN)/enclave keys create admin --admin
	$(BIN)/enclave serve

fmt:
	$(BIN)/ruff format .

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types:
	$(BIN)/mypy enclave models store rag ingest server eval

# The web UI's browser test drives Debian's chromium (no browser download by Playwright).
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

test: browser
	$(BIN)/python -m pytest

check: install lint types test
