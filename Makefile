# Two commands do all the setup on a fresh machine (Python 3.11+, Go for the local cluster):
#   make demo   - the main job on the embedded local cluster
#   make test   - the whole test suite (what CI runs): lint, then pytest with the local cluster
#   make unit   - the tests that need no local cluster (about 2 min)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test unit lint venv binaries prometheus bench-fgd clean

$(BIN)/.installed: pyproject.toml setup.py $(wildcard proto/*/*/*.proto proto/*/*/*/*.proto)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

venv: $(BIN)/.installed

binaries:
	bash .ci/build-k8s.sh

prometheus:
	bash .ci/install-prometheus.sh

demo: venv
	$(BIN)/gpufleet demo

lint: venv
	$(BIN)/ruff check .

test: venv binaries prometheus lint
	$(BIN)/python -m pytest -q

unit: venv lint
	$(BIN)/python -m pytest -q -m "not cluster"

bench-fgd: venv
	$(BIN)/python bench/reproduce_fgd.py

clean:
	rm -rf $(VENV) build *.egg-info
