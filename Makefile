# Nova: `make up` runs it, `make test` tests it. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export NOVA_RAG_DATA_DIR ?= .nova/rag
SHELL  := bash
STACK   = if [ -x $(BIN)/python ]; then $(BIN)/python deploy/local_stack.py $@; \
          else echo "make up has not run in this checkout"; fi

.DEFAULT_GOAL := help
.PHONY: help venv up down status logs ingest test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)  ## create .venv and install Nova with its pinned dependencies

up: $(STAMP)  ## start Redis, the RAG service (indexing knowledge/ on first run) and the app; wait until healthy
	@$(BIN)/python deploy/local_stack.py up

down:  ## stop what make up started, and nothing else
	@$(STACK)

status:  ## print every breaker's state from the app's /health
	@$(STACK)

logs:  ## follow the services' logs
	@$(STACK)

ingest: $(STAMP)  ## re-index knowledge/ (and any PATHS=...) after editing documents
	$(BIN)/python -m rag ingest knowledge/ $(PATHS)

test: $(STAMP)  ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## print breaker overhead, retrieval quality and RAG latency figures
	$(BIN)/python bench/breaker_overhead.py
	$(BIN)/python bench/rag_eval.py
	$(BIN)/python bench/rag_latency.py
	$(BIN)/python bench/voice.py

clean:  ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
