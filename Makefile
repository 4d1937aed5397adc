# Task list. `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Which hashed lock .venv is built from: cpu (default) or gpu; `make venv-gpu` / `make venv-cpu` switch.
FLAVOUR := $(shell cat .venv-flavour 2>/dev/null || echo cpu)
LOCK := requirements/$(FLAVOUR).txt
STAMP := $(VENV)/.installed-$(FLAVOUR)
LOCK_ARGS := --python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet $(LOCK_FLAGS)
# DVC and MLflow phone home by default; this project never does.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(CURDIR)/$(BIN):$(PATH)
export UV_LINK_MODE := copy

.PHONY: venv venv-gpu venv-cpu lock demo test test-fast repro compare shortcut-study push pull remote ui app \
	server lint bench clean-venv

venv: $(STAMP)

# A fresh venv whenever the lock changes: one lock installed over another leaves packages behind, and
# tensorflow-cpu and tensorflow own the same files. uv (itself hash-pinned) installs every package with
# its hash checked; its cache makes a rebuild quick. Bytecode is compiled at install: where
# PYTHONDONTWRITEBYTECODE is set (CI images often do) every process would otherwise compile TensorFlow,
# MLflow and DVC from source again (measured here: 21 s against 8 s for their imports).
$(STAMP): pyproject.toml $(LOCK) requirements/uv.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --require-hashes --no-deps -r requirements/uv.txt
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m coronet.experiments.offline_plots
	touch $@

# GPU machines: .venv rebuilt from requirements/gpu.txt (tensorflow[and-cuda] and its pinned CUDA packages).
venv-gpu:
	echo gpu > .venv-flavour
	$(MAKE) venv

venv-cpu:
	echo cpu > .venv-flavour
	$(MAKE) venv

# Re-resolve the locks from pyproject.toml; uv keeps the versions already pinned unless LOCK_FLAGS=--upgrade.
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra cpu --extra dev --extra tools --universal $(LOCK_ARGS) \
		-o requirements/cpu.txt
	$(BIN)/uv pip compile pyproject.toml --extra gpu --extra dev --extra tools \
		--python-platform x86_64-manylinux_2_28 $(LOCK_ARGS) -o requirements/gpu.txt
	echo "uv==$$($(BIN)/uv --version | cut -d' ' -f2)" | $(BIN)/uv pip compile - --universal --no-annotate \
		$(LOCK_ARGS) -o requirements/uv.txt

demo: venv
	$(BIN)/python -m coronet.experiments.demo

# Three workers (pytest-xdist) on two cores: the end-to-end tests spend a third of their time waiting on
# subprocesses, servers and browsers (measured 818 s of CPU in 640 s on two workers). Each test file runs on one
# worker, in the order tests/conftest.py sets; the shared pipeline run is built once.
test: venv
	$(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder

# The edit-test loop: the code and data tiers (no training, no DVC pipeline run).
test-fast: venv
	$(BIN)/python -m pytest -n 2 -m "code or data"

repro: venv
	$(BIN)/dvc repro

# Experiments side by side at terminal width: the params that differ and the headline metrics.
compare: venv
	$(BIN)/coronet compare

# Data and models to and from the DVC remote (default: ../coronet-dvc-storage; `make remote URL=...`).
# The folder of a folder remote (DVC reads a relative url from the config's folder, .dvc/), "" for s3:// and others.
REMOTE_DIR = url=$$($(BIN)/dvc config "remote.$$($(BIN)/dvc config core.remote 2>/dev/null).url" 2>/dev/null); \
	case "$$url" in ""|*://*) dir="";; /*) dir="$$url";; *) dir=".dvc/$$url";; esac

# A folder remote that cannot be written is one line, not DVC's traceback of permission errors.
push: venv
	@$(REMOTE_DIR); if [ -n "$$dir" ]; then mkdir -p "$$dir" 2>/dev/null && [ -w "$$dir" ] || { \
	  echo "error: cannot write to the DVC remote $$url (read-only, or its parent folder is): allow writing there, or name another with make remote URL=..." >&2; exit 2; }; fi
	$(BIN)/dvc push

# A commit with no results (no dvc.lock), or a folder remote nobody has pushed to yet, is one line, not DVC's
# page of missing files.
pull: venv
	@[ -f dvc.lock ] || { echo "error: this commit has no dvc.lock, so it names no data or model to pull: check out a commit that kept a run (README: Keep a baseline), or run the pipeline (make demo, dvc repro)" >&2; exit 2; }
	@$(REMOTE_DIR); if [ -n "$$dir" ] && [ -z "$$(ls -A "$$dir" 2>/dev/null)" ]; then \
	  echo "error: the DVC remote $$url does not exist yet or is empty: push to it from a clone that has the data (make push), or name your team's with make remote URL=..." >&2; exit 2; fi
	$(BIN)/dvc pull

remote: venv
	@test -n "$(URL)" || { echo "usage: make remote URL=s3://bucket/path (or gs://, ssh://, a folder)"; exit 2; }
	$(BIN)/dvc remote add --local --force --default storage "$(URL)"

# The MLflow UI on this project's store, opened on the experiment's training runs (not MLflow's GenAI overview).
ui: venv
	$(BIN)/coronet ui $(if $(PORT),--port $(PORT))

# The page for clinical researchers: one X-ray in; the answer, where the model looked, what to distrust.
app: venv
	$(BIN)/coronet app $(if $(PORT),--port $(PORT)) $(APP_ARGS)

# The shortcut study: baseline, nuisance augmentation, source mixing and both, queued and run side by side.
shortcut-study: venv
	$(BIN)/coronet study $(STUDY_ARGS)

# A team tracking server to try: PostgreSQL (initdb in .team-server/, its owner only) behind `mlflow server` on
# 127.0.0.1:5050 (make ui keeps MLflow's 5000).
server: venv
	$(BIN)/python -m coronet.tracking.team_server $(if $(PORT),--port $(PORT))

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/resize_parallel.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/nuisance_cost.py
	$(BIN)/python benchmarks/predict_throughput.py
	$(BIN)/python benchmarks/stress_cost.py
	$(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/first_steps.py
	$(BIN)/python benchmarks/first_epoch.py
	$(BIN)/python benchmarks/tar_parts.py
	$(BIN)/python benchmarks/backbones.py
	$(BIN)/python benchmarks/bootstrap.py
	$(BIN)/python benchmarks/checkpoint_cost.py
	$(BIN)/python benchmarks/server_start.py

clean-venv:
	rm -rf $(VENV) .venv-flavour
