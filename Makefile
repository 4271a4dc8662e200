# Only two commands are needed on a fresh machine: `make search` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GAME ?= starpilot
WORKDIR ?= runs/search_cpu_demo_$(GAME)

.PHONY: setup test search bench clean

setup: $(STAMP)

# Re-install only when the package metadata changes: `make setup` is quick when done.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile tests

search: setup
	$(PY) -m experiments.search --config=experiments/configs/search.py:cpu_demo \
	  --config.env_name=$(GAME) --workdir=$(WORKDIR)

# Throughput figures (JSON on stdout); they print, they never assert.
bench: setup
	$(PY) -m benchmarks.network_throughput
	$(PY) -m benchmarks.ppo_throughput
	$(PY) -m benchmarks.dqn_throughput

clean:
	rm -rf $(VENV) runs
