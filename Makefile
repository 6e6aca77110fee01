# aigc: the few verbs a user needs. Each target installs what it needs first, on a bare machine.
#   make repro   run the whole pipeline (dvc repro)
#   make test    run the test suite on CPU
#   make bench   print speed and memory figures, and the textbook baselines beside the models
#   make lint    ruff
#   make pr-report   the markdown a pull request gets (metrics, params, grids)
#   make privacy-sweep   vae and dcgan at epsilon 1, 3, 10 and without DP-SGD, through DVC's queue
#   make sweep   data quantity and data quality grids for dcgan and vae, through DVC's queue
#   make compare the experiments of this commit, headline metrics only (dvc exp show)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# DVC and dvclive make no network calls: no analytics, no update check, no Studio.
export DVC_NO_ANALYTICS := 1
export DVC_STUDIO_OFFLINE := 1
export DVCLIVE_OPEN := false
export PATH := $(abspath $(BIN)):$(PATH)

JOBS ?= 1  # queue workers of a sweep (dvc queue start -j); 1 suits 2 cores
SWEEP ?=   # more options of stages/sweep.py, e.g. SWEEP="--grids quantity --families vae"

.PHONY: repro test bench lint pr-report privacy-sweep sweep compare setup system-packages clean-venv

repro: setup
	dvc repro

test: setup
	pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run

lint: setup
	ruff check .
	ruff format --check .

pr-report: setup
	$(BIN)/python -m stages.pr_report

privacy-sweep: setup
	$(BIN)/python -m stages.privacy_sweep --jobs $(JOBS)
	dvc repro report

# The ruler and the clean data first, so that every queued point restores them from the cache.
sweep: setup
	dvc repro evaluate-real
	$(BIN)/python -m stages.sweep --jobs $(JOBS) $(SWEEP)

compare: setup
	$(BIN)/python -m stages.compare

setup: $(INSTALLED) system-packages

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian packages: Fashion-MNIST and fortunes (the default data) and Chromium (the report's
# browser test).
system-packages:
	@missing=""; \
	[ -e $(FASHION_MNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	[ -d /usr/share/games/fortunes ] || missing="$$missing fortunes"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "note: install$$missing with: sudo apt-get install -y$$missing"; \
	     echo "      (without dataset-fashion-mnist, set data.download: true or another data.source)"; exit 0; fi; \
	if command -v apt-get >/dev/null; then \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q$$missing \
	  || echo "note: apt-get could not install$$missing"; \
	else echo "note: no apt-get here; install$$missing by hand"; fi

clean-venv:
	rm -rf $(VENV)
