# asset-webhooks — the two commands of the quickstart are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test chaos bench lint system-deps kafka-up kafka-down postgres-up postgres-down clean \
	images compose-test test-containers fresh-check

# The virtual environment, rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests use: PostgreSQL (store tests), kcat (a Kafka client that is not ours),
# Maven and a JDK (the local broker), nginx (the benchmark sink), Chromium and its driver (the admin page). Installed only when missing; needs root or sudo.
system-deps:
	@missing=""; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP) system-deps
	scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every test: lint and strict typing first, then the suite against a real Kafka broker and PostgreSQL
# (started by the test fixtures when not already given, see tests/conftest.py).
test: $(STAMP) system-deps lint
	$(BIN)/pytest

# The fault-injection suite at full length (the short version runs inside `make test`).
chaos: $(STAMP) system-deps
	ASSETHOOKS_CHAOS_SCALE=long $(BIN)/pytest -m chaos -s

# The benchmarks (not part of `make test` or CI): about 25 minutes on 2 cores; prints a table of figures.
bench: $(STAMP) system-deps
	scripts/kafka-local.sh start
	scripts/postgres-local.sh start
	ASSETHOOKS_BENCH_POSTGRES_URL=$$(scripts/postgres-local.sh url) $(BIN)/python -m bench

# Containers, on images built here (no registry needed; scripts/containers.sh says how). Each starts dockerd
# when no engine answers (as root) and stops it afterwards; without Docker each says why it is skipped.
images:
	scripts/containers.sh images

# docker-compose.yml end to end: up, a webhook, sample events, signed deliveries verified, down -v.
compose-test:
	scripts/containers.sh compose-test

# A slice of the suite with its broker and PostgreSQL from testcontainers.
test-containers: $(STAMP) system-deps
	scripts/containers.sh test-containers

# The newcomer's path: `make demo` and `make test` in a new bare Debian container (about 25 minutes).
fresh-check:
	scripts/containers.sh fresh-check

kafka-up:
	scripts/kafka-local.sh start

kafka-down:
	scripts/kafka-local.sh stop

postgres-up:
	scripts/postgres-local.sh start

postgres-down:
	scripts/postgres-local.sh stop

clean:
	-scripts/kafka-local.sh stop
	-scripts/postgres-local.sh stop
	rm -rf .local .mypy_cache .ruff_cache .pytest_cache *.egg-info assethooks.db*
