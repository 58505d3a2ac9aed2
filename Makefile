# Custos: `make run` starts it, `make test` runs every test. Both install what
# is missing first (and skip what is already there). See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

CARGO_LEPTOS_VERSION := 0.3.10
# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/"/, "", $$3); print $$3; exit }' Cargo.lock)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DATA_DIR ?= ./data
BIND ?= 127.0.0.1:3000

.PHONY: help run demo test tools test-tools build site check-wasm replicas faults bench-replicas bench-ingest bench-api bench-dashboards bench-alerts bench-forward bench-seed bench-search bench-ui bench-pg bench lint

help:
	@echo "make run    build the release site and start Custos on http://$(BIND) (SQLite under $(DATA_DIR))"
	@echo "make test   every Rust test on SQLite and a throw-away PostgreSQL, then the Playwright suite"
	@echo "make bench          every benchmark below, then one table: measure, value, baseline, ratio, aim, met? (see README)"
	@echo "make bench-ingest   the ledger ingest/verify benchmark (see README)"
	@echo "make bench-api      HTTP ingest, search and exports on 1M events (see README)"
	@echo "make demo           add DEMO_EVENTS (100000) realistic demo events to $(DATA_DIR), then 'make run'"
	@echo "make bench-dashboards   each dashboard query on DASH_EVENTS (10M) seeded events (see README)"
	@echo "make bench-alerts   ingest with and without 50 alert rules; commit -> alert, -> webhook (see README)"
	@echo "make bench-forward  SIEM forwarding: a backlog caught up over syslog/TLS and HEC; commit -> received (see README)"
	@echo "make bench-search   first-page searches over HTTP on the DASH_EVENTS ledger, next to their SQL alone"
	@echo "make bench-ui       the explorer's paint, hydration and results in Chromium on the DASH_EVENTS ledger"
	@echo "make bench-pg       PostgreSQL: ingest/verify next to plain inserts/reads; search on PG_SEARCH_EVENTS events"
	@echo "make bench-replicas ingest with 1, 2 and 3 processes on one PostgreSQL, next to plain inserts (see README)"
	@echo "make faults         the fault suite: kill -9, PostgreSQL restart and freeze, disk full, clock jumps, a tail across replicas, schemathesis (README: Faults)"
	@echo "make replicas       three replicas on one throw-away PostgreSQL; REPLICA_RUNS (10) kill -9 failovers under load (see README)"

## Tools ------------------------------------------------------------------

tools:
	@if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then \
	  echo "==> installing the wasm32 target"; rustup target add wasm32-unknown-unknown; fi
	@if ! cargo leptos --version 2>/dev/null | grep -q "$(CARGO_LEPTOS_VERSION)"; then \
	  echo "==> installing cargo-leptos $(CARGO_LEPTOS_VERSION) (about 9 minutes, once)"; \
	  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
	    cargo install --locked cargo-leptos@$(CARGO_LEPTOS_VERSION); fi
	@if ! wasm-bindgen --version 2>/dev/null | grep -q " $(WASM_BINDGEN_VERSION)"; then \
	  echo "==> installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (about 4 minutes, once)"; \
	  cargo install --force wasm-bindgen-cli@$(WASM_BINDGEN_VERSION); fi
	@if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -x node_modules/.bin/playwright ] || [ ! -d node_modules/echarts ] \
	    || [ ! -d node_modules/swagger-ui-dist ] \
	    || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  echo "==> installing npm packages (binaryen's wasm-opt, echarts, Swagger UI, Playwright; no browser download)"; \
	  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund; fi
	@mkdir -p public/vendor
	@cmp -s node_modules/echarts/dist/echarts.min.js public/vendor/echarts.min.js \
	  || cp node_modules/echarts/dist/echarts.min.js public/vendor/echarts.min.js
	@mkdir -p public/vendor/swagger-ui
	@for f in swagger-ui-bundle.js swagger-ui.css LICENSE; do \
	  cmp -s node_modules/swagger-ui-dist/$$f public/vendor/swagger-ui/$$f || cp node_modules/swagger-ui-dist/$$f public/vendor/swagger-ui/$$f; done

test-tools: tools
	@if ! command -v chromium >/dev/null; then \
	  echo "==> installing Debian's Chromium"; $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq chromium; fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "==> installing PostgreSQL (server binaries for the throw-away test cluster)"; \
	  $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq postgresql; fi
	@if ! /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then \
	  echo "==> installing aiosmtpd (the SMTP sink the notification tests deliver mail to)"; \
	  $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq python3-aiosmtpd; fi
	@if ! ls /usr/lib/*-linux-gnu/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then \
	  echo "==> installing libfaketime (the fault suite steps one replica's clock)"; \
	  $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq faketime; fi
	@if [ ! -x /usr/sbin/rsyslogd ] || [ ! -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ]; then \
	  echo "==> installing rsyslog with GnuTLS (the SIEM forwarding tests send syslog over TLS to it)"; \
	  $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq rsyslog rsyslog-gnutls; fi
	@if ! $(HOME)/.cache/custos/pyvenv/bin/python -c 'import pycef, moto.server, schemathesis' 2>/dev/null; then \
	  echo "==> installing pycef, moto and schemathesis in $(HOME)/.cache/custos/pyvenv (an independent CEF parser for the forwarding tests, an S3 API server for archives and backups, the API conformance fuzzer)"; \
	  if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq python3-venv; fi; \
	  /usr/bin/python3 -m venv $(HOME)/.cache/custos/pyvenv && $(HOME)/.cache/custos/pyvenv/bin/pip install -q pycef 'moto[server]==5.2.1' 'schemathesis==4.32.5'; fi
	@if ! command -v qpdf >/dev/null || ! command -v pdftotext >/dev/null; then \
	  echo "==> installing qpdf and poppler-utils (the tests check exported PDFs with real readers)"; \
	  $(SUDO) apt-get update -qq; $(SUDO) apt-get install -y -qq qpdf poppler-utils; fi

## Build and run ----------------------------------------------------------

site: tools
	cargo leptos build --release

run: site
	@CUSTOS_DATA_DIR=$(DATA_DIR) $(TARGET_DIR)/release/custos keys init
	@echo "==> Custos on http://$(BIND)  (Ctrl-C stops it)"
	CUSTOS_DATA_DIR=$(DATA_DIR) CUSTOS_SERVER__BIND=$(BIND) CUSTOS_SERVER__SITE_ROOT=$(CURDIR)/target/site \
	  exec $(TARGET_DIR)/release/custos serve

DEMO_EVENTS ?= 100000
demo: site
	@CUSTOS_DATA_DIR=$(DATA_DIR) $(TARGET_DIR)/release/custos keys init
	CUSTOS_DATA_DIR=$(DATA_DIR) $(TARGET_DIR)/release/custos demo seed --events $(DEMO_EVENTS)

## Tests ------------------------------------------------------------------

test: test-tools
	scripts/test.sh

check-wasm:
	scripts/check-wasm-deps.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

## Benchmarks -------------------------------------------------------------

EVENTS ?= 200000
bench-ingest: site
	$(TARGET_DIR)/release/custos bench ingest --events $(EVENTS)

API_EVENTS ?= 1000000
# LEPTOS_OUTPUT_NAME as cargo-leptos sets it: this build also writes
# $(TARGET_DIR)/release/custos, and without it leptos is compiled to ask for
# pkg/custos_bg.wasm, which the site does not hold (the explorer bench after
# it then never hydrated).
bench-api:
	LEPTOS_OUTPUT_NAME=custos cargo bench -p custos-server --bench api -- --events $(API_EVENTS) --queries 400

bench-alerts: site
	$(TARGET_DIR)/release/custos bench alerts

# FORWARD_EVENTS: the backlog each destination catches up with.
FORWARD_EVENTS ?= 1000000
bench-forward: site
	$(TARGET_DIR)/release/custos bench forward --events $(FORWARD_EVENTS)

# Three replicas on one throw-away PostgreSQL under load; each run kills the
# holder of each lease held all the time (kill -9) and times the takeovers.
REPLICA_RUNS ?= 10
replicas: site test-tools
	scripts/replicas.sh $(TARGET_DIR)/release/custos $(REPLICA_RUNS)

# Ingest with 1, 2 and 3 processes on one throw-away PostgreSQL, next to
# plain inserts in the same run; medians of REPLICA_BENCH_ROUNDS rounds.
REPLICA_BENCH_EVENTS ?= 300000
REPLICA_BENCH_ROUNDS ?= 3
bench-replicas: site test-tools
	python3 scripts/replicas-bench.py $(TARGET_DIR)/release/custos $(REPLICA_BENCH_EVENTS) $(REPLICA_BENCH_ROUNDS)

# Every fault scenario (or FAULTS="pg-hung disk-full"); one line of figures each.
FAULTS ?=
faults: site test-tools
	python3 scripts/faults.py $(TARGET_DIR)/release/custos $(FAULTS)

# Seeds once (10M events: ~7 minutes and ~14 GB), then times every query.
DASH_EVENTS ?= 10000000
BENCH_DIR ?= $(TARGET_DIR)/bench-dashboards
# The same seeded ledger serves bench-dashboards, bench-search and bench-ui.
# The dashboards' windows end now: a seed over a day old is made again (the
# directory, a bench seed, is emptied first). After seeding, a disabled user is made, so
# that a server started on it does not create a first administrator.
bench-seed: site
	@if [ -d $(BENCH_DIR) ] && [ -n "$$(ls $(BENCH_DIR))" ] && ! ls $(BENCH_DIR)/seeded-* >/dev/null 2>&1; then \
	  echo "$(BENCH_DIR) holds something other than a bench seed: not touching it (choose another BENCH_DIR)"; exit 1; fi
	@if [ -d $(BENCH_DIR) ] && [ -z "$$(find $(BENCH_DIR) -maxdepth 1 -name seeded-$(DASH_EVENTS) -mmin -1440)" ]; then \
	  echo "==> $(BENCH_DIR): no seed of $(DASH_EVENTS) events from the last day; seeding again"; rm -rf $(BENCH_DIR); fi
	@mkdir -p $(BENCH_DIR)
	@CUSTOS_DATA_DIR=$(BENCH_DIR) $(TARGET_DIR)/release/custos keys init
	@[ -f $(BENCH_DIR)/seeded-$(DASH_EVENTS) ] || { CUSTOS_DATA_DIR=$(BENCH_DIR) $(TARGET_DIR)/release/custos demo seed --events $(DASH_EVENTS) \
	  && head -c 24 /dev/urandom | base64 | CUSTOS_DATA_DIR=$(BENCH_DIR) $(TARGET_DIR)/release/custos user create --username bench-owner \
	     --role viewer --password-stdin >/dev/null \
	  && CUSTOS_DATA_DIR=$(BENCH_DIR) $(TARGET_DIR)/release/custos user disable bench-owner >/dev/null \
	  && touch $(BENCH_DIR)/seeded-$(DASH_EVENTS); }

bench-dashboards: bench-seed
	CUSTOS_DATA_DIR=$(BENCH_DIR) $(TARGET_DIR)/release/custos bench dashboards

bench-search: bench-seed
	CUSTOS_DATA_DIR=$(BENCH_DIR) $(TARGET_DIR)/release/custos bench search

UI_RUNS ?= 10
bench-ui: bench-seed test-tools
	scripts/bench-ui.sh $(TARGET_DIR)/release/custos $(BENCH_DIR) $(DASH_EVENTS) $(UI_RUNS)

# PostgreSQL: a cluster of its own under BENCH_PG_DIR (or the server at
# BENCH_PG_URL); the search ledger is seeded once (10M: ~12 minutes) and kept.
# Under /var/tmp, not the target directory: run as root, the cluster runs as
# the postgres user, who cannot reach a target directory under /root.
BENCH_PG_DIR ?= /var/tmp/custos-bench-pg
PG_INGEST_EVENTS ?= 100000
PG_SEARCH_EVENTS ?= 10000000
bench-pg: site test-tools
	scripts/bench-pg.sh $(TARGET_DIR)/release/custos $(BENCH_PG_DIR) $(PG_INGEST_EVENTS) $(PG_SEARCH_EVENTS)

# Every benchmark in turn (about 45 minutes once seeded; the first run seeds
# 10M events on SQLite and on PostgreSQL, about 15 minutes more), then one
# table of what each measured next to its baseline and the aim it is held to.
# A bench that fails leaves some or all of its rows out; the others still run,
# the table is printed, and make fails.
BENCH_RESULTS ?= $(TARGET_DIR)/bench-results.jsonl
bench: test-tools
	@rm -f $(abspath $(BENCH_RESULTS))
	@rc=0; BENCH_RESULTS=$(abspath $(BENCH_RESULTS)) $(MAKE) --no-print-directory -k bench-ingest bench-api \
	  bench-dashboards bench-search bench-ui bench-pg bench-alerts bench-forward || rc=$$?; \
	python3 scripts/bench-table.py $(abspath $(BENCH_RESULTS)) | tee $(TARGET_DIR)/bench-table.md; exit $$rc
