# Sigil: `make run` (the daemon demo, offline) and `make test` (everything a reviewer runs) set up
# what they need: a venv with the Python packages, the extension, an embedded PostgreSQL.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-stamp
DATA ?= data
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run replay test long chaos bench bench-save bench-check lint fmt build-dev wheel clean rust-test py-test stubtest browser

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

## Headless Chromium for the browser tests (the HTML tearsheet): Debian's package, installed when missing
## and when run as root; otherwise it says why, and those tests skip with that reason.
browser:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "browser: chromium is not installed and installing it needs root (apt-get install -y chromium): the browser tests will skip"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: chromium is not installed and there is no apt-get: the browser tests will skip"; \
	else \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	  || echo "browser: apt-get could not install chromium: the browser tests will skip"; \
	fi

## Every benchmark runs once with timing off (quick sizes): a broken benchmark fails here, timing stays out.
py-test: build-dev browser
	$(BIN)/pytest -q -x --timeout=600 -m "not long and not chaos" --benchmark-disable tests

## The minutes-long scenarios that `make test` leaves out.
long: build-dev
	$(BIN)/pytest -q -x --timeout=1800 -m long tests --ignore=tests/benchmarks
	SIGIL_PROPERTY_EXAMPLES=1000 $(BIN)/pytest -q -x --timeout=3600 tests/test_properties.py

## The fault scenarios (tests/chaos): kill -9, SIGTERM, PostgreSQL down and hung, the exchange killed and
## banned, a standby's takeover, live mode with lost answers, 500 symbols; the invariants after each. Writes
## docs/RELIABILITY.md from the run's records, also when a scenario fails (then exits non-zero).
CHAOS_RESULTS := target/chaos/results.jsonl
chaos: build-dev
	rm -f $(CHAOS_RESULTS)
	@set -u; status=0; \
	SIGIL_CHAOS_RESULTS=$(CURDIR)/$(CHAOS_RESULTS) $(BIN)/pytest -q --timeout=1800 tests/chaos || status=$$?; \
	$(BIN)/python -m tests.chaos.report $(CHAOS_RESULTS) docs/RELIABILITY.md || status=$$?; \
	exit $$status

## Everything a reviewer runs.
test: lint rust-test build-dev stubtest py-test

## Benchmarks: criterion (engine) and pytest-benchmark (what Python callers see), ratios vs TA-Lib, kand, talipp.
## Every timed run writes .benchmarks/ratios.json (git-ignored: figures belong to the machine that made them).
BENCH_DIR := .benchmarks
BENCH_BASELINE := $(BENCH_DIR)/baseline.json
## bench-check's own run (not ratios.json, which any timed benchmark run in the tree rewrites).
BENCH_CHECK := $(BENCH_DIR)/check.json
BENCH_TOLERANCES := tests/benchmarks/tolerances.toml
BENCH_PYTEST := $(BIN)/pytest -q tests/benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds \
  --benchmark-storage=file://$(CURDIR)/$(BENCH_DIR)
## On a machine kept for it, absolute times too: make bench-check BENCH_COMPARE_FAIL=min:15%
BENCH_COMPARE_FAIL ?=
## Last, the README's table (between its bench-table markers) from the run, each goal judged.
BENCH_GOALS := tests/benchmarks/goals.toml
bench: build-dev
	cargo bench -p sigil-engine -q
	$(BENCH_PYTEST)
	$(BIN)/python -m sigil.bench.readme $(BENCH_DIR)/ratios.json README.md --goals $(BENCH_GOALS)

## The baseline, on a good commit: pytest-benchmark's saved run (.benchmarks/<machine>/NNNN_baseline.json)
## and Sigil's ratios (.benchmarks/baseline.json: case -> ratio, the commit, the CPU, the cores).
bench-save: build-dev
	$(BENCH_PYTEST) --benchmark-save=baseline --sigil-ratios=$(BENCH_BASELINE)

## The same run again, each ratio against the baseline's: a table, and exit 1 when a case got worse than its
## tolerance (tests/benchmarks/tolerances.toml, 15 % by default) or went missing.
bench-check: build-dev
	@test -f $(BENCH_BASELINE) || { echo "no $(BENCH_BASELINE): run make bench-save on a good commit"; exit 2; }
	rm -f $(BENCH_CHECK)
	@set -u; status=0; \
	$(BENCH_PYTEST) --sigil-ratios=$(BENCH_CHECK) \
	  $(if $(BENCH_COMPARE_FAIL),--benchmark-compare --benchmark-compare-fail=$(BENCH_COMPARE_FAIL)) || status=$$?; \
	$(BIN)/python -m sigil.bench.gate $(BENCH_BASELINE) $(BENCH_CHECK) \
	  --tolerances $(BENCH_TOLERANCES) || status=$$?; \
	exit $$status

fmt: $(STAMP)
	cargo fmt --all
	$(BIN)/ruff format python tests
	$(BIN)/ruff check --fix -q python tests

## The portable wheel (manylinux2014, glibc 2.17, x86-64; zig links it, auditwheel checks it), built in
## target/wheel once per state of the sources; prints its path.
wheel: $(STAMP)
	$(BIN)/python tools/build_wheel.py

clean:
	rm -rf $(VENV) target
