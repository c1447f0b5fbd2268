# Two entry points that work on a fresh machine with only Python:
#   make demo  -> sets up .venv, runs `dse sweep hwspecs/systolic.yaml`, writes reports/systolic/index.html
#   make test  -> sets up .venv with test extras, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: setup demo test test-all bench clean
setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/dse sweep hwspecs/systolic.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/resnet50_systolic.py
	$(BIN)/python benchmarks/sweep_speed.py
	$(BIN)/python benchmarks/int8_resnet50.py

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache
