# Two entry points that work on a fresh machine with only Python:
#   make demo  -> sets up .venv (core dependencies only), runs `dse sweep hwspecs/systolic.yaml`,
#                 writes reports/systolic/index.html
#   make test  -> sets up .venv with the test extras, runs the test suite
# Both install the versions the suite was last green with (constraints.txt, pip -c); `make lock`
# refreshes that file deliberately from a fresh unconstrained install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.installed-core
TEST_STAMP := $(VENV)/.installed-test
CONSTRAINTS := constraints.txt

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(CORE_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[test]'
	touch $(CORE_STAMP) $@

.PHONY: setup demo test test-all bench lock clean
setup: $(TEST_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/dse sweep hwspecs/systolic.yaml

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 -m ''

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/resnet50_systolic.py
	$(BIN)/python benchmarks/sweep_speed.py
	$(BIN)/python benchmarks/validate_simt.py
	$(BIN)/python benchmarks/validate_cpu.py
	$(BIN)/python benchmarks/int8_resnet50.py

lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q --upgrade pip
	build/lock-venv/bin/python -m pip install -q '.[test]'
	{ head -2 $(CONSTRAINTS); build/lock-venv/bin/python -m pip freeze --exclude accel-dse | \
	  sed 's/$$/ ; python_version >= "3.11"/'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf build/lock-venv

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache
