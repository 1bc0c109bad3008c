# Every target sets itself up: a fresh clone needs only `make test` or `make train`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where make train finds its data; the default downloads MNIST into ./data.
DATA ?= --dataset mnist --data-dir ./data
ARGS ?=

.PHONY: test thorough harness train lint typecheck bench walkthrough clean

# Bytecode: every Python process the targets start (xdist's workers, the CLI and harness runs that
# tests start as processes, the notebook's kernel) would otherwise compile each module it imports
# from source again where PYTHONDONTWRITEBYTECODE is set, as on the machines CI runs on: importing
# what a test process imports took 9.5 s that way and 4.2 s from cached bytecode. The cache goes under
# .venv (PYTHONPYCACHEPREFIX), never into the source tree, and `make clean` removes it.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX := $(abspath $(VENV))/pycache

# --no-compile: pip would byte-compile every module of torch and its CUDA libraries up front (the
# install took 71 s with it, 48 s without); with the cache above, Python compiles only what is
# imported, once, on first use.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	touch $(STAMP)

# The parity harness (parity_tests/), the application's own tests (tests/) and the walkthrough
# notebook (executed top to bottom by nbmake on the small dataset it writes itself), spread over
# the machine's cores by pytest-xdist. BACKPROP_DATASET=synthetic keeps the notebook on that dataset even
# where the real data folder (../shared/datasets) exists.
# Tests marked slow (minutes, or many processes) are left to `make thorough`: each one's reason names
# the fast test here that covers the same property at a smaller size.
# The notebook first and --dist worksteal: no worker idles at the end while the other runs a long test.
JOBS ?= auto
NOTEBOOKS := examples/walkthrough.ipynb
test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} BACKPROP_DATASET=synthetic $(PY) -m pytest -q -n $(JOBS) --dist worksteal -m "not slow" --nbmake $(NOTEBOOKS) parity_tests tests

# 1000 examples a property, on every core, with hypothesis's statistics per property at the end
# (examples run, invalid ones and why, time in data generation vs the test), and the slow tests.
thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q -n $(JOBS) --hypothesis-show-statistics parity_tests tests

# Only the parity properties, against ENGINE (a module path): make harness ENGINE=mypkg.my_engine
harness: $(STAMP)
	$(PY) -m pytest -q --pyargs parity_tests $(if $(ENGINE),--engine $(ENGINE))

train: $(STAMP)
	$(VENV)/bin/backprop train $(DATA) $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/backprop bench $(DATA) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Execute the walkthrough in place (rendered outputs to commit), on real data when there is some:
# BACKPROP_DATA_DIR (default ../shared/datasets if it exists) and BACKPROP_DATASET (fashion-mnist);
# with neither, on the synthetic data the notebook writes.
WALKTHROUGH_DATA ?= $(abspath $(wildcard ../shared/datasets))
walkthrough: $(STAMP)
	BACKPROP_DATA_DIR=$${BACKPROP_DATA_DIR:-$(WALKTHROUGH_DATA)} BACKPROP_DATASET=$${BACKPROP_DATASET:-fashion-mnist} \
		$(PY) -m pytest -q -p no:cacheprovider -n 0 --nbmake --overwrite --nbmake-timeout=1800 $(NOTEBOOKS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache
