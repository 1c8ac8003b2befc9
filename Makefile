# Two commands for a new user: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Which TensorFlow build to install: cpu (default) or gpu.
TF ?= cpu
STAMP := $(VENV)/.installed-$(TF)

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export TF_CPP_MIN_LOG_LEVEL ?= 2
export MPLBACKEND ?= Agg
export GX_ANALYTICS_ENABLED ?= false

.PHONY: run test test-fast lint format install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(TF),dev,dask]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m flows.full $(ARGS)

# Everything, slow end-to-end and real-server tests included (what CI runs).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick lane while editing: everything not marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff (format check + lint) and mypy on the pipeline's code.
lint: install
	$(BIN)/ruff format --check tasks flows deployments expectations tests benchmarks
	$(BIN)/ruff check tasks flows deployments expectations tests benchmarks
	$(BIN)/mypy tasks flows

format: install
	$(BIN)/ruff format tasks flows deployments expectations tests benchmarks
	$(BIN)/ruff check --fix tasks flows deployments expectations tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
