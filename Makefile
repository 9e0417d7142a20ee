# lossbench: the front door. `make help` lists the targets.
#
# Every target that needs Python first builds the project-local virtual
# environment (.venv) from requirements/constraints.txt, so a fresh clone
# needs nothing but `make repro` / `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
CONSTRAINTS := requirements/constraints.txt
STAMP       := $(VENV)/.installed
# Parallel compile jobs for mmcv's ops; FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST
# (e.g. "9.0") are read from the environment on a machine with CUDA.
MAX_JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
# PROFILE=voc|coco|smoke runs the study on another profile (dvc exp run -S profile=...)
PROFILE     ?=
DVC         := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc
PYTEST_ARGS ?=

.PHONY: help setup test repro report bench env queue collect gpu-wheels gpu-check clean-venv

## help: list the targets (this message)
help:
	@echo "lossbench: make TARGET"
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /' -e 's/: /\t/' | expand -t 16

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) pip
	@# mmcv 2.1.0 is built from source against the installed torch: install its
	@# build requirements first, then build without isolation (pip caches the wheel).
	$(PIP) install -q -c $(CONSTRAINTS) torch setuptools wheel ninja numpy opencv-python mmengine
	MMCV_WITH_OPS=1 MAX_JOBS=$(MAX_JOBS) $(PIP) install -q --no-build-isolation -c $(CONSTRAINTS) mmcv
	$(PIP) install -q --no-build-isolation -c $(CONSTRAINTS) -e ".[test]"
	$(PY) -m lossbench env >/dev/null || { echo "error: mmcv's compiled ops do not load (run: $(PY) -m lossbench env)"; exit 1; }
	@touch $@

## setup: build .venv with the pinned stack (first time ~30 min on 2 cores: mmcv compiles)
setup: $(STAMP)

## env: print versions of the stack, the device and the git revision
env: $(STAMP)
	$(PY) -m lossbench env

## test: run the test suite (sets up .venv first if needed)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## repro: run the whole study with DVC (default profile of params.yaml; PROFILE=voc|coco to switch)
repro: $(STAMP)
ifeq ($(PROFILE),)
	$(DVC) repro
else
	$(DVC) exp run -S profile=$(PROFILE)
endif

## report: rebuild reports/<profile>/ from the runs' metrics (no training)
report: $(STAMP)
	$(DVC) repro --force --single-item report

## bench: speed measurements into reports/bench.md (heads vs stock, losses, data, dvc no-op)
bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out reports/bench.md

## queue: the training grid through DVC's queue, JOBS workers, one GPU each (GPUS=0,1,...)
JOBS ?= 2
GPUS ?=
queue: $(STAMP)
	$(DVC) repro prepare
	$(PY) -m lossbench queue submit --jobs $(JOBS) $(if $(GPUS),--gpus $(GPUS))

## collect: wait for the queue, merge its runs into runs/ and dvc.lock, rebuild the report
collect: $(STAMP)
	$(PY) -m lossbench queue collect --wait
	$(DVC) repro --single-item report

## gpu-wheels: download what the GPU check installs offline (cp312 wheels, mmcv source) into .whl/
GPU_PYVER ?= 3.12
gpu-wheels: $(STAMP)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYVER) \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
	  -c $(CONSTRAINTS) -d .whl addict mmdet mmengine platformdirs pycocotools shapely \
	  termcolor terminaltables yapf
	$(PY) -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -c $(CONSTRAINTS) -d .whl mmcv
	@# mmcv 2.1.0's setup.py imports pkg_resources (gone in setuptools 82): its build uses this one
	mkdir -p .whl/build && $(PY) -m pip download -q --no-deps --only-binary=:all: -c $(CONSTRAINTS) -d .whl/build setuptools

## gpu-check: on one NVIDIA GPU, offline: build mmcv's CUDA ops, train each family, write reports/gpu/
gpu-check:
	bash scripts/gpu_check.sh all

## clean-venv: remove the virtual environment (the pip cache is kept)
clean-venv:
	rm -rf $(VENV)
