# Two commands for a fresh clone: `make demo` and `make test` (each creates .venv and installs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@ $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/keepwell demo

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n auto -p no:cacheprovider

bench: $(DEV)
	$(BIN)/python -m benchmarks.all

clean:
	rm -rf $(VENV) outbox demo-data keepwell.db keepwell.db-wal keepwell.db-shm
