# Nova: `make up` runs it, `make test` tests it. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export NOVA_RAG_DATA_DIR ?= .nova/rag
SHELL  := bash
STACK   = if [ -x $(BIN)/python ]; then $(BIN)/python deploy/stack.py $@; \
          else echo "make up has not run in this checkout"; fi

# Containers: `make up RUNTIME=podman` runs podman-compose.yml instead of local processes.
RUNTIME    ?= local
IMAGE_TAG  ?= latest
LOCAL_BASE := localhost/nova-base:bookworm
WHEELS     := .nova/wheelhouse/.built-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# Images build FROM the local base when `make base-image` made one, else from Docker Hub.
BASE_IMAGE ?= $(shell podman image exists $(LOCAL_BASE) 2>/dev/null && echo $(LOCAL_BASE) \
                || echo docker.io/library/python:3.11-slim-bookworm)
NOVA_REDIS_IMAGE ?= $(shell podman image exists $(LOCAL_BASE) 2>/dev/null \
                && echo $(LOCAL_BASE) || echo docker.io/library/redis:7.2-bookworm)

.DEFAULT_GOAL := help
.PHONY: help venv up down status logs ingest test lint format bench clean \
        wheelhouse base-image images

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)  ## create .venv and install Nova with its pinned dependencies

up: $(STAMP) $(if $(filter podman,$(RUNTIME)),images)  ## start Redis, the RAG service and the app (RUNTIME=podman: in containers); wait until healthy
	@NOVA_REDIS_IMAGE=$(NOVA_REDIS_IMAGE) NOVA_IMAGE_TAG=$(IMAGE_TAG) \
	    $(BIN)/python deploy/stack.py up --runtime $(RUNTIME)

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

bench: $(STAMP)  ## print every benchmark's figures (the soak alone takes 5 minutes)
	$(BIN)/python bench/breaker_overhead.py
	$(BIN)/python bench/rag_eval.py
	$(BIN)/python bench/rag_latency.py
	$(BIN)/python bench/voice.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/health_http.py
	$(BIN)/python bench/soak.py

$(WHEELS): pyproject.toml $(STAMP)
	@rm -rf .nova/wheelhouse
	$(BIN)/python -m pip wheel --quiet --wheel-dir .nova/wheelhouse '.[app,rag,bookworm]'
	@touch $@

wheelhouse: $(WHEELS)  ## build every pinned dependency as a wheel in .nova/wheelhouse, for the images

base-image:  ## debootstrap a minimal Debian bookworm and import it as localhost/nova-base:bookworm
	@command -v debootstrap >/dev/null || { echo "base-image needs debootstrap and root: apt-get install debootstrap"; exit 1; }
	rm -rf .nova/base-rootfs
	debootstrap --variant=minbase --include=python3,python3-venv,redis-server,ca-certificates \
	    bookworm .nova/base-rootfs $(DEBIAN_MIRROR) >.nova/base-image.log
	cd .nova/base-rootfs && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* \
	    usr/share/doc usr/share/man usr/share/locale
	tar -C .nova/base-rootfs -c . | podman import --change 'CMD ["/bin/bash"]' - $(LOCAL_BASE)
	rm -rf .nova/base-rootfs

# Nova's own wheel is rebuilt every time, reproducibly (SOURCE_DATE_EPOCH), so an unchanged
# tree reuses every cached layer and `make up RUNTIME=podman` does not rebuild the images.
images: $(WHEELS)  ## build localhost/nova-rag and localhost/nova-app from deploy/Containerfile.nova
	@SOURCE_DATE_EPOCH=315532800 $(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir .nova/wheelhouse .
	@for target in rag app; do \
	    podman build --quiet --network=none --build-arg BASE=$(BASE_IMAGE) --build-arg EXTRAS=$$target \
	        --target $$target --tag localhost/nova-$$target:$(IMAGE_TAG) \
	        --file deploy/Containerfile.nova . >/dev/null || exit 1; \
	done
	@podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter reference='localhost/nova-*'

clean:  ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
