# make services: build and run the engine as users of the original typed it.
# make full:     the same behind HTTPS with production auth (see below).
# make test:     install the test extras and run the whole suite (lint included).
# Both work in .venv (created when missing), never in the system's Python.
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PORT ?= 7890

.PHONY: services full runtime test build debug-build bench bench-save bench-check clean

services: runtime
	$(PYTHON) -m engine serve --port $(PORT)

# make full: the server as deployed: HTTPS/WSS (a self-signed certificate made
# once into data/tls unless SSL_CERTFILE/SSL_KEYFILE are given), production
# auth (add users with: python -m engine adduser NAME), metrics at /metrics.
TLS = $(if $(SSL_CERTFILE),--ssl-certfile $(SSL_CERTFILE) --ssl-keyfile $(SSL_KEYFILE),--ssl-self-signed)
full: runtime
	$(PYTHON) -m engine serve --host 0.0.0.0 --port $(PORT) --auth production $(TLS)

$(VENV)/bin/python:
	python3 -m venv $(VENV)

runtime: $(VENV)/bin/python
	$(PYTHON) -m pip install -q -e .

build: $(VENV)/bin/python
	$(PYTHON) -m pip install -q -e '.[test]'

debug-build:
	PTG_DEBUG_BUILD=1 $(PYTHON) setup.py build_ext --inplace --force

test: build
	$(PYTHON) -m pytest -q

bench: build
	$(PYTHON) -m pytest bench/bench_core.py --benchmark-only --benchmark-min-time=0.0002 -p no:cacheprovider

# The micro-benchmarks against the baseline committed in bench/baselines:
# fails when a median is more than 15% slower (bench-save records a new one);
# the end-to-end workloads (bench/bench_e2e.py) fail when their share of
# redis-benchmark is 20% below bench/baselines/e2e.json.
# A round lasts at least 0.2 ms: a call of 50 ns is timed 4,000 times a round,
# not once (pytest-benchmark's calibration otherwise may pick one iteration
# and measure the timer).
BENCH_STORE = --benchmark-storage=file://bench/baselines --benchmark-min-time=0.0002 -p no:cacheprovider
bench-save: build
	$(PYTHON) -m pytest bench/bench_core.py --benchmark-only $(BENCH_STORE) --benchmark-save=baseline

bench-check: build
	$(PYTHON) -m pytest bench/bench_core.py --benchmark-only $(BENCH_STORE) --benchmark-compare \
		--benchmark-compare-fail=median:15% --benchmark-columns=min,median,max,rounds
	PTG_BENCH_CHECK=1 $(PYTHON) -m pytest bench/bench_e2e.py --benchmark-only -p no:cacheprovider \
		--benchmark-columns=rounds

clean:
	rm -rf build dist *.egg-info ext/*.c ext/*.html engine/*.so
