# Every target sets itself up: a fresh clone needs only `make test` or `make train`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where make train finds its data; the default downloads MNIST into ./data.
DATA ?= --dataset mnist --data-dir ./data
ARGS ?=

.PHONY: test thorough harness train lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The parity harness (parity_tests/) and the application's own tests (tests/), spread over the
# machine's cores by pytest-xdist (most CLI tests wait on a subprocess importing torch).
JOBS ?= auto
test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -q -n $(JOBS) parity_tests tests

thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q -n $(JOBS) parity_tests tests

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache
