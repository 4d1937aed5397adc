# Task list. `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# DVC and MLflow phone home by default; this project never does.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv venv-gpu demo test repro ui lint bench clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

# GPU machines: the same pins, with the CUDA build of TensorFlow instead of tensorflow-cpu.
venv-gpu: venv
	$(BIN)/python -m pip install --quiet -c requirements.lock "tensorflow[and-cuda]==2.21.0"

demo: venv
	$(BIN)/python -m coronet.demo

test: venv
	$(BIN)/python -m pytest

repro: venv
	$(BIN)/dvc repro

ui: venv
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/resize_parallel.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/predict_throughput.py
	$(BIN)/python benchmarks/stress_cost.py

clean-venv:
	rm -rf $(VENV)
