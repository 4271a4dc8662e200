# Only two commands are needed on a fresh machine: `make search` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
GAME ?= starpilot
WORKDIR ?= runs/search_cpu_demo_$(GAME)

.PHONY: setup egl lock lint test search bench clean

setup: $(STAMP)

# The exact versions of requirements.lock (dev extras included), then the package itself
# without dependencies. Re-install only when the lock or the package metadata changes:
# `make setup` is quick when done.
$(STAMP): setup.py $(LOCK)
	$(MAKE) --no-print-directory egl
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check >/dev/null || { $(PY) -m pip check; \
	  echo "error: requirements.lock does not cover setup.py: run 'make lock'"; exit 1; }
	touch $(STAMP)

# Headless MuJoCo rendering (DM-Control, rldarts/env/dmc.py; MUJOCO_GL=egl) needs the EGL
# libraries: Mesa's (llvmpipe on a CPU) from Debian/Ubuntu packages when they are missing.
# Without apt-get or root, install libegl1 + libgl1-mesa-dri (or libosmesa6 and set
# MUJOCO_GL=osmesa) yourself; only the DM-Control envs and their tests need them.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
egl:
	@ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || { command -v apt-get >/dev/null && $(SUDO) apt-get update -q && \
	  $(SUDO) apt-get install -y -q libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri; } || \
	  echo "warning: no EGL libraries: DM-Control envs will not render (see Makefile: egl)"

# Re-resolve requirements.lock from setup.py's ranges (Python 3.11, linux x86_64, with the
# dev extras); commit the result. `make lock` keeps the current pins that still satisfy
# setup.py (adding what it newly needs), `make lock UPGRADE=1` moves every pin to the
# newest allowed release.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'uv>=0.5'
	$(VENV)/bin/uv pip compile setup.py --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --annotation-style line \
	  --custom-compile-command 'make lock' --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

# Style: ruff's lint rules and formatter check (pyproject.toml). `make test` runs it first,
# so CI fails on a violation; `ruff format . && ruff check --fix .` repairs most of them.
lint: setup
	$(VENV)/bin/ruff check .; status=$$?; $(VENV)/bin/ruff format --check . && exit $$status

test: setup lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

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

# Accelerator check (benchmarks/accelerator_check.sh): installs what a base JAX machine
# lacks, then smoke search, PPO/DQN throughput and summary.json into $(OUT) or the default.
accelerator-check: ; bash benchmarks/accelerator_check.sh $(OUT)
