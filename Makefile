# make services: build and run the engine as users of the original typed it.
# make test:     install the test extras and run the whole suite (lint included).
PYTHON ?= python3
PORT ?= 7890

.PHONY: services test build debug-build bench clean

services: build
	$(PYTHON) -m engine serve --port $(PORT)

build:
	$(PYTHON) -m pip install -q -e '.[test]'

debug-build:
	PTG_DEBUG_BUILD=1 $(PYTHON) setup.py build_ext --inplace --force

test: build
	$(PYTHON) -m pytest -q

bench: build
	$(PYTHON) -m pytest bench --benchmark-only -p no:cacheprovider

clean:
	rm -rf build dist *.egg-info ext/*.c ext/*.html engine/*.so
