# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMEDRIVER := /usr/bin/chromedriver
PROMTOOL     := /usr/bin/promtool

.PHONY: run test native lint typecheck unit integration browser promtool schemas loadtest benchmarks audit clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP) native
	$(BIN)/leadstream run

test: $(STAMP) native browser promtool lint typecheck
	$(BIN)/python -m pytest -q -ra --durations=10

# The scoring core compiled with mypyc (streams/native.py): rebuilt when its source changes.
# NATIVE=0 skips it; the worker and the tests then run the pure-Python core
# (LEADSTREAM_NATIVE=0 is exported so that a build left from earlier is not used either).
NATIVE ?= 1
NATIVE_BUILD := streams/_native/manifest.json
ifeq ($(NATIVE),0)
export LEADSTREAM_NATIVE := 0
native:
	@echo "NATIVE=0: the pure-Python scoring core"
else
native: $(NATIVE_BUILD)
$(NATIVE_BUILD): $(STAMP) streams/leads.py streams/scoring.py streams/construct.c streams/native.py
	@command -v $${CC:-cc} >/dev/null 2>&1 || { \
	  echo "make: compiling the scoring core needs a C compiler and Python's headers (Debian: apt-get install gcc python3-dev), or NATIVE=0 for the pure-Python core" >&2; exit 1; }
	$(BIN)/leadstream core build
endif

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) native
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) native browser promtool
	$(BIN)/python -m pytest -q tests/integration

# The rep inbox's browser test drives Debian's Chromium through chromedriver
# (tests/integration/test_inbox.py): installed from Debian's packages when missing.
browser:
	@test -x $(CHROMEDRIVER) || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "make: the browser test needs Debian's chromium and chromium-driver; install them as root: apt-get install chromium chromium-driver" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "make: the browser test needs Chromium and $(CHROMEDRIVER) (Debian: apt-get install chromium chromium-driver); no apt-get here" >&2; exit 1; }; \
	  echo "installing chromium and chromium-driver (Debian packages) for the browser test"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	}

# The alert rules, the Prometheus config and the worker's /metrics are checked with promtool
# (tests/unit/test_prometheus_rules.py, tests/integration/test_observability.py): Debian's
# prometheus package, installed when missing.
promtool:
	@test -x $(PROMTOOL) || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "make: the observability tests need Debian's prometheus package (promtool); install it as root: apt-get install prometheus" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "make: the observability tests need $(PROMTOOL) (Debian: apt-get install prometheus); no apt-get here" >&2; exit 1; }; \
	  echo "installing prometheus (Debian package, for promtool) for the observability tests"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	}

# Known vulnerabilities of the installed packages. Not part of `make test`: it needs PyPI's
# JSON API (or OSV) on the network, which CI machines may not reach. --strict: a package that
# could not be looked up fails the audit instead of passing unchecked.
audit: $(STAMP)
	@$(BIN)/pip-audit --local --strict --progress-spinner off || { \
	  echo "make audit: FAILED: a known vulnerability above, or packages pip-audit could not look up (it needs https://pypi.org/pypi/<name>/json or https://api.osv.dev)" >&2; exit 1; }

schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

# Benchmarks print figures; they are not tests (README: Load tests, Performance).
# `loadtest`: throughput, latency and the raw-loop baseline in one run (~4 min).
loadtest: $(STAMP) native
	$(BIN)/python -m loadtest --events 300000 --rate 1000 --duration 30 --baseline

# `benchmarks`: every figure of README's Performance section, one after the other (~15 min
# on 2 cores). Run it before publishing figures: a memory regression once went unnoticed
# for a while because only the throughput run was repeated.
benchmarks: loadtest
	$(BIN)/python -m loadtest --events 100000 --leads 100000 --cover --rate 0
	$(BIN)/python -m loadtest --events 1000000 --leads 1000000 --cover --rate 0
	$(BIN)/python -m loadtest --events 300000 --workers 2 --rate 0
	$(BIN)/python -m loadtest --events 0 --workers 2 --rate 1000 --duration 30 --baseline
	$(BIN)/python -m loadtest.recovery --leads 100000 --store both
	$(BIN)/python -m loadtest.burst --rate 1000 --steady 20 --burst 10 --leads 2000
	$(BIN)/python -m loadtest.burst --rate 1500 --steady 25 --burst 5 --leads 500 --flood 300000
	$(BIN)/python -m loadtest.replay_bench --events 200000 --leads 20000
	$(BIN)/python -m loadtest.cpu_bench
	LEADSTREAM_NATIVE=0 $(BIN)/python -m loadtest.cpu_bench
	$(BIN)/python -m loadtest.ablation --drop core --events 300000 --rate 0 --baseline

clean:
	rm -rf $(VENV) streams/_native .leadstream-data .pytest_cache .mypy_cache .ruff_cache *.egg-info
