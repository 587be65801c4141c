# Sigil: `make run` (the daemon demo, offline) and `make test` (everything a reviewer runs) set up
# what they need: a venv with the Python packages, the extension, an embedded PostgreSQL.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-stamp
DATA ?= data
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run replay test long bench lint fmt build-dev wheel clean rust-test py-test stubtest

## The venv: exactly pyproject.toml's build backend, dependencies and `dev` extra (listed there once,
## printed by tools/dev_requirements.py); the project itself is built by `maturin develop`, not installed.
$(STAMP): pyproject.toml tools/dev_requirements.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python tools/dev_requirements.py > $(VENV)/requirements-dev.txt
	$(BIN)/pip install -q -r $(VENV)/requirements-dev.txt
	touch $(STAMP)

## Build the extension in release mode into the venv (editable Python sources).
build-dev: $(STAMP)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/maturin develop --release -q

## The demo: the daemon stack offline on embedded defaults. A throw-away embedded PostgreSQL and its
## migrations; `sigil exchange-sim` serving the bundled real candles DEMO_SPEED times faster than real
## time, its clock starting 8 real seconds before the first candle (time for the daemon to start, so
## every candle is traded); `sigil daemon` paper-trading the four variants with a live progress line
## until the data ends; then `sigil report` (the same table as `sigil replay --data data`).
DEMO_SPEED ?= 500000
SIM_PORT ?= 8900
run: build-dev
	@set -euo pipefail; \
	export SIGIL_HOME="$$(mktemp -d)"; sim=""; \
	trap '[ -n "$$sim" ] && kill $$sim 2>/dev/null; wait 2>/dev/null; rm -rf "$$SIGIL_HOME"' EXIT; \
	read -r start end < <($(BIN)/python -c "from sigil.data import load_universe; \
	  s = load_universe(['$(DATA)']); lead = int(8 * 1000 * $(DEMO_SPEED)); \
	  print(min(int(x.time[0]) for x in s) - lead, max(int(x.time[-1]) + x.timeframe_ms for x in s))"); \
	$(BIN)/sigil migrate; \
	$(BIN)/sigil exchange-sim --data $(DATA) --port $(SIM_PORT) --speed $(DEMO_SPEED) --start $$start & sim=$$!; \
	$(BIN)/sigil daemon --exchange-url http://127.0.0.1:$(SIM_PORT) --until $$end --health-port 0 --quiet --progress \
	  --set daemon.scan_interval_s=0.5 --set daemon.exit_pass=false --set exchange.rate_limit_ms=1; \
	$(BIN)/sigil report

## The replay alone: the bundled real candles through the four variants, in a second.
replay: build-dev
	$(BIN)/sigil replay --data $(DATA)

lint: $(STAMP)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	$(BIN)/ruff check python tests
	$(BIN)/ruff format --check python tests
	$(BIN)/mypy

stubtest: build-dev
	$(BIN)/python -m mypy.stubtest sigil._core

rust-test:
	cargo test --workspace --exclude sigil-core -q

py-test: build-dev
	$(BIN)/pytest -q -x --timeout=600 -m "not long" tests --ignore=tests/benchmarks

## The minutes-long scenarios that `make test` leaves out.
long: build-dev
	$(BIN)/pytest -q -x --timeout=1800 -m long tests --ignore=tests/benchmarks

## Everything a reviewer runs.
test: lint rust-test build-dev stubtest py-test

## Benchmarks: criterion (engine) and pytest-benchmark (what Python callers see), ratios vs TA-Lib, kand, talipp.
bench: build-dev
	cargo bench -p sigil-engine -q
	$(BIN)/pytest -q tests/benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds

fmt: $(STAMP)
	cargo fmt --all
	$(BIN)/ruff format python tests
	$(BIN)/ruff check --fix -q python tests

wheel: $(STAMP)
	$(BIN)/maturin build --release

clean:
	rm -rf $(VENV) target
