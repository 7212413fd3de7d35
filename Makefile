# make kernel: .venv with pinned dependencies, the default local[*] kernel installed and smoke-tested.
# make test:   the linter, then the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KERNEL ?= pyspark-local
PYTEST_ARGS ?=

.PHONY: venv browser hub-proxy kernel lint test test-busy smoke bench ci-smoke clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt
	# Byte-compiled on every core, where pip compiles one file after the other: 25 s less here.
	# Only a cache of Python's: a file that does not compile is named, and left to fail if imported.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib || echo "compileall: some files were not byte-compiled (see above)" >&2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	# An editable install leaves out data files: the one that enables the Spark UI server extension.
	install -D -m 0644 jupyter-config/jupyter_server_config.d/pyspark-kernel.json $(VENV)/etc/jupyter/jupyter_server_config.d/pyspark-kernel.json
	touch $@

kernel: venv
	$(BIN)/pyspark-kernel create -k $(KERNEL) -e $(VENV) --force
	$(BIN)/pyspark-kernel smoke $(KERNEL)

# The JupyterLab test drives Debian's Chromium; as root (CI), install it when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else echo "Chromium is missing: sudo apt-get install chromium (the JupyterLab test needs it)"; fi; }

# The JupyterHub test's proxy, configurable-http-proxy, from npm (package-lock.json pins it); as
# root (CI), Debian's npm is installed when it is missing.
hub-proxy: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm; \
	  else echo "npm is missing: sudo apt-get install npm (the JupyterHub test needs it)"; exit 1; fi; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Ruff, with the rules in pyproject.toml ([tool.ruff]): seconds, so before the tests.
lint: venv
	$(BIN)/ruff check .

# One run on three workers (pytest-xdist; no test depends on another), on a 2-core machine: the
# end-to-end tests (real kernels, real Spark) wait as much as they compute (a cluster's timeouts,
# a kernel's linger, a hub), and a third worker fills those waits (measured on one commit: 909 s
# with three, 937 s with two; the tests' bounds are made for the load run, the suite beside two
# CPU-bound loops). They run longest first, then the fast tests, which fill the gaps the last
# end-to-end tests leave (tests/conftest.py orders them). With --maxschedchunk 1 each worker holds
# the test it runs and the next one: xdist would otherwise give each worker a fixed share of the
# run at the start, in order, so one of them every end-to-end test. The e2e marker still picks
# either part: `make test PYTEST_ARGS='-m "not e2e"'` runs the fast tests alone.
TEST_WORKERS ?= 3
test: venv lint browser hub-proxy
	# The project's own byte code, as a pip install writes it: an editable install has none, and
	# where PYTHONDONTWRITEBYTECODE is set every CLI, hook and test worker would compile the
	# package again (0.4 s of CPU a `create`, which the suite runs hundreds of times).
	$(BIN)/python -m compileall -q -j 0 pyspark_kernel tests local_extensions.py benchmarks
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1 --durations=15 $(PYTEST_ARGS)

# The whole suite beside two CPU-bound processes: run it whenever start-up or timing changes.
test-busy: venv browser hub-proxy
	tests/beside_load.sh 2 $(MAKE) test

smoke: venv
	$(BIN)/pyspark-kernel smoke $(KERNEL)

# What a team's CI runs (docs/ci.md): bake each kernel, smoke it, keep the reports.
CI_DIR ?= build/ci
CI_KERNELS ?= pyspark-ci
CI_PROFILE ?= local
ci-smoke: venv
	rm -rf $(CI_DIR) && mkdir -p $(CI_DIR)/reports
	set -e; for kernel in $(CI_KERNELS); do \
	  $(BIN)/pyspark-kernel create -k $$kernel -d $(CI_DIR)/kernels --profile $(CI_PROFILE); \
	  $(BIN)/pyspark-kernel smoke $$kernel -d $(CI_DIR)/kernels --junit $(CI_DIR)/reports/$$kernel.xml \
	    --save-notebook $(CI_DIR)/reports/$$kernel.ipynb $(if $(CI_NOTEBOOK),--notebook $(CI_NOTEBOOK)); \
	done

# Kernel start-up against the baselines (about 20 minutes), then the memory of many notebooks
# on the classic, a dedicated and a shared kernel (about 10 minutes); prints the tables.
bench: venv
	$(BIN)/python benchmarks/kernel_startup.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/shared_driver.py $(SHARED_BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info test-output node_modules
	find . -name __pycache__ -prune -exec rm -rf {} +
