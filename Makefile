# Two commands do all the setup on a fresh machine (Python 3.11+, Go for the local cluster):
#   make demo   - the main job on the embedded local cluster
#   make test   - the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv binaries prometheus bench-fgd clean

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

test: venv binaries prometheus
	$(BIN)/python -m pytest -q

bench-fgd: venv
	$(BIN)/python bench/reproduce_fgd.py

clean:
	rm -rf $(VENV) build *.egg-info
