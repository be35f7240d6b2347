# Enclave: `make run` installs and serves on the bundled defaults; `make check` runs
# format, lint, types and tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DOCS ?= examples/docs

.PHONY: install ocr run check fmt lint types test bench browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Each step says what it does; times are for a first install on 2 cores (re-runs take
# seconds). unstructured-inference comes last, without its dependencies: installed earlier,
# pip would list its model packages (opencv, timm, ...) as missing in ERROR lines.
install: $(BIN)/python
	@echo "==> 1/6 PyTorch 2.13.0, CPU build, first so that nothing pulls a CUDA build"
	$(BIN)/pip install -q torch==2.13.0
	@echo "==> 2/6 llama-cpp-python: compiles llama.cpp from source, about 5 minutes on 2 cores"
	@echo "    the first time (pip shows 'Building wheel for llama-cpp-python' until it is done;"
	@echo "    the wheel is cached, later installs take seconds)"
	$(BIN)/pip install 'llama-cpp-python>=0.3.16'
	@echo "==> 3/6 Enclave and its dependencies, with the S3 client and Ray (a few minutes the"
	@echo "    first time)"
	$(BIN)/pip install -q -e '.[dev,s3,ray]'
	@echo "==> 4/6 unstructured-inference, imported by unstructured's PDF module; its model"
	@echo "    dependencies are not needed, so it is installed without them"
	$(BIN)/pip install -q --no-deps unstructured-inference==1.6.14
	@echo "==> 5/6 the int8 embedder: the bundled MiniLM exported to ONNX and quantised once"
	@echo "    (about 30 s on 2 cores; kept in ~/.cache/enclave/embedders, re-runs take a second)"
	$(BIN)/enclave models build-int8
	@$(MAKE) --no-print-directory ocr
	@echo "==> installed into $(VENV)"

# OCR for scanned PDFs and images: Debian's tesseract-ocr, installed when missing and this is
# root with apt-get; otherwise says what to do (without it such files are quarantined as
# "needs OCR", and `enclave quarantine retry --all` reads them once it is installed).
ocr:
	@if command -v tesseract >/dev/null 2>&1; then \
	  echo "==> 6/6 OCR: $$(tesseract --version 2>&1 | head -n 1) is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> 6/6 OCR: apt-get install tesseract-ocr (Debian's Tesseract, about 30 MB)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tesseract-ocr \
	    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	        --no-install-recommends tesseract-ocr); \
	else \
	  echo "==> 6/6 OCR: tesseract is not installed and cannot be installed here (needs root"; \
	  echo "    and apt-get). Scanned PDFs and images will be quarantined as 'needs OCR'."; \
	  echo "    Install it (Debian/Ubuntu: sudo apt-get install tesseract-ocr; macOS: brew"; \
	  echo "    install tesseract), then run: enclave quarantine retry --all"; \
	fi

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
