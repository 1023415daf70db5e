# netspectra: `make help` lists the targets.
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST ?= $(PY) -m pytest

.PHONY: help deps venv build proto test test-unit test-kernel lint demo fleet-demo bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install distribution packages (bcc, kernel headers, tcpreplay); needs root
	bash scripts/deps.sh

# The venv uses the machine's python3 and sees Debian's bcc (pure Python over
# ctypes) through one symlink, not the whole system site-packages.
$(VENV)/.built: pyproject.toml setup.py netspectra/_sketch.pyx $(wildcard netspectra/*.pxi)
	python3 -m venv $(VENV)
	ln -sfn /usr/lib/python3/dist-packages/bcc "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/bcc"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.built ## create .venv with netspectra (editable) and test tools

build: venv ## rebuild the Cython extension in place
	$(PY) setup.py -q build_ext --inplace

# The gRPC stubs in netspectra/api/v1 are committed (DO NOT EDIT headers);
# tests/unit/test_api_stubs.py fails when they differ from this output.
proto: venv ## regenerate netspectra/api/v1 from proto/netspectra/v1/*.proto
	$(PY) scripts/gen_proto.py

test: deps venv lint ## set up, lint and run every test (kernel tests need root)
	$(PYTEST) -q tests

test-unit: venv ## tests that need no root
	$(PYTEST) -q tests/unit

lint: venv ## ruff for Python
	$(VENV)/bin/ruff check netspectra tests bench
	$(VENV)/bin/ruff format --check netspectra tests bench

demo: deps venv ## set up and run the live demo in a throwaway namespace (root)
	$(PY) -m netspectra.demo

fleet-demo: deps venv ## three sensors, NATS and the collector, network-wide, in throwaway namespaces (root)
	$(PY) -m netspectra.demo --fleet

bench: deps venv ## run the benchmarks (JSON on stdout)
	$(PY) -m bench.kernel_cost
	$(PY) -m bench.epoch_read
	$(PY) -m bench.accuracy
	$(PY) -m bench.offline
	$(PY) -m bench.scrape
	$(PY) -m bench.api_latency
	$(PY) -m bench.store
	$(PY) -m bench.fleet

clean: ## remove build outputs and the venv
	rm -rf $(VENV) build *.egg-info netspectra/_sketch.c netspectra/*.so
