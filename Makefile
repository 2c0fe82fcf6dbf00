# Nova: `make up` runs it, `make test` tests it. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export NOVA_RAG_DATA_DIR ?= .nova/rag
SHELL  := bash

.DEFAULT_GOAL := help
.PHONY: help venv up ingest test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)  ## create .venv and install Nova with its pinned dependencies

up: $(STAMP)  ## index knowledge/ on first run, then serve the chat UI (8000), health (8001), RAG (8002)
	@test -f $(NOVA_RAG_DATA_DIR)/CURRENT || $(BIN)/python -m rag ingest knowledge/
	@$(BIN)/python -m assistant.offline_ui .nova/chainlit-frontend
	@trap 'kill 0' EXIT; \
	if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then \
	  if command -v redis-server >/dev/null; then \
	    redis-server --port 6379 --bind 127.0.0.1 --dir .nova --appendonly yes --save "" & \
	  else echo "No Redis on 127.0.0.1:6379: conversations stay in memory until one answers."; fi; \
	fi; \
	$(BIN)/python -m rag serve & \
	$(BIN)/python -m assistant & \
	wait -n

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
