# One entry point for people and CI. `make demo` runs the whole pipeline locally; `make test` the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install demo test lint unit integration bench clean

help:
	@echo "make demo   - run the whole pipeline locally (in-process AWS emulation, no account, no Docker)"
	@echo "make test   - lint and run the whole test suite"
	@echo "make bench  - run the benchmarks (JSON output)"

# Create or reuse the virtual environment; reinstall when the pins or the project change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[serve,train,local,dev]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medimage demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml
	$(BIN)/statelint statemachine/*.asl.json

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .aws-sam build
