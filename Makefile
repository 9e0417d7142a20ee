# lossbench: the front door. `make help` lists the targets.
#
# Every target that needs Python first builds the project-local virtual
# environment (.venv) from requirements/lock.txt (exact versions and hashes),
# so a fresh clone needs nothing but `make repro` / `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
LOCK        := requirements/lock.txt
STAMP       := $(VENV)/.installed
# torch is installed first, from TORCH_INDEX when set, else from pip's configured
# index (PyPI gives Linux the CUDA build). On a CPU-only machine use the CPU build:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH       := $(shell sed -n 's/^\(torch==[^ ]*\).*/\1/p' requirements/torch.in)
# Parallel compile jobs for mmcv's ops; FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST
# (e.g. "9.0") are read from the environment on a machine with CUDA.
MAX_JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
# PROFILE=voc|coco|smoke switches the study to another profile (see `repro`)
PROFILE     ?=
DVC         := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc
PYTEST_ARGS ?=

.PHONY: help setup lock lint test test-fast repro sweep remedies report bench env gpu-wheels gpu-check clean-venv

## help: list the targets (this message)
help:
	@echo "lossbench: make TARGET"
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /' -e 's/: /\t/' | expand -t 16

$(STAMP): pyproject.toml $(LOCK) requirements/build.txt requirements/torch.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch (pinned by version: its CPU and CUDA builds are different files), its
	@# dependencies at the versions of requirements/torch.txt; then everything else, hash-checked
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) -c requirements/torch.txt "$(TORCH)"
	@# mmcv 2.1.0 is built from source against the installed torch: its build
	@# requirements first, then everything else without build isolation (pip caches the wheel).
	$(PIP) install -q --require-hashes -r requirements/build.txt
	MMCV_WITH_OPS=1 MAX_JOBS=$(MAX_JOBS) $(PIP) install -q --no-build-isolation --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -m lossbench env >/dev/null || { echo "error: mmcv's compiled ops do not load (run: $(PY) -m lossbench env)"; exit 1; }
	@touch $@

## lock: recompile requirements/{torch,lock,build}.txt from requirements/*.in (pip-tools)
lock: $(STAMP)
	$(PIP) install -q pip-tools
	$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links \
	  --unsafe-package torch -o requirements/torch.txt requirements/torch.in
	$(VENV)/bin/pip-compile -q --no-build-isolation --generate-hashes --strip-extras --no-emit-index-url \
	  --no-emit-find-links --unsafe-package torch -o $(LOCK) requirements/requirements.in
	$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links -o requirements/build.txt requirements/build.in

## setup: build .venv with the locked stack (first time ~10 min on 2 cores: mmcv compiles)
setup: $(STAMP)

## env: print versions of the stack, the device and the git revision
env: $(STAMP)
	$(PY) -m lossbench env

## lint: ruff over src/, tests/, benchmarks/ and configs/
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks configs

## test: run the test suite (sets up .venv first if needed)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## test-fast: the tests that need no training run or DVC pipeline (seconds)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The study, in DVC's own mechanisms: data (`dvc repro prepare`); every training that needs no
# selection, each run as `dvc repro` runs it and recorded in dvc.lock (`lossbench queue $(QUEUE)`);
# the val selection (`dvc repro select`); the extra seeds of each family's best the same way;
# then `dvc repro report`. QUEUE=run (default) trains here, JOBS side by side (THREADS intra-op
# threads each; GPUS=0,1,... gives each a GPU); QUEUE=slurm submits one Slurm job per training
# through submitit and waits for them (SLURM_ARGS: its flags, e.g. --partition gpu
# --gpus-per-job 1 --time 120; docs/scaling.md). A plain `dvc repro report` does the same one
# stage at a time.
QUEUE   ?= run
JOBS    ?= 2
GPUS    ?=
THREADS ?= $(if $(GPUS)$(filter slurm,$(QUEUE)),,1)
SLURM_ARGS ?=
QUEUE_ARGS = $(if $(filter slurm,$(QUEUE)),$(SLURM_ARGS),--jobs $(JOBS) $(if $(GPUS),--gpus $(GPUS))) \
	$(if $(THREADS),--threads $(THREADS))
STUDY   := $(DVC) repro prepare pretrain && \
	$(PY) -m lossbench queue $(QUEUE) $(QUEUE_ARGS) && \
	$(DVC) repro select && \
	$(PY) -m lossbench queue $(QUEUE) --set extra $(QUEUE_ARGS) && \
	$(DVC) repro report

## repro: run the study (params.yaml's profile; PROFILE=voc|coco|smoke switches; JOBS=2 side by side, QUEUE=slurm: Slurm jobs)
# PROFILE=x sets the one line `profile: x` of params.yaml (nothing else), says so,
# and puts the previous params.yaml and dvc.lock back if the run fails.
repro: $(STAMP)
ifneq ($(PROFILE),)
	@rm -f .params.yaml.bak .dvc.lock.bak && cp params.yaml .params.yaml.bak
	@if [ -f dvc.lock ]; then cp dvc.lock .dvc.lock.bak; fi
	@sed -i 's/^profile: .*/profile: $(PROFILE)/' params.yaml
	@echo "params.yaml: profile is now $(PROFILE) (git diff shows the one line; make repro PROFILE=synth switches back)"
	@{ $(STUDY); } || { mv .params.yaml.bak params.yaml; \
	  if [ -f .dvc.lock.bak ]; then mv .dvc.lock.bak dvc.lock; else rm -f dvc.lock; fi; \
	  echo "make repro PROFILE=$(PROFILE) failed: params.yaml and dvc.lock are as they were"; exit 1; }
	@rm -f .params.yaml.bak .dvc.lock.bak
else
	$(STUDY)
endif

## sweep: the imbalance sweep (after make repro: it trains each family's val-selected best; QUEUE as repro)
sweep: $(STAMP)
	$(DVC) repro --glob 'prepare_sweep@*'
	$(PY) -m lossbench queue $(QUEUE) --set sweep $(QUEUE_ARGS)
	$(DVC) repro report_sweep

## remedies: the four later remedies (after make repro; QUEUE as repro), their report in reports/<profile>_remedies/
remedies: $(STAMP)
	$(DVC) repro prepare pretrain
	$(PY) -m lossbench queue $(QUEUE) --set remedies $(QUEUE_ARGS)
	$(DVC) repro select_remedies
	$(PY) -m lossbench queue $(QUEUE) --set remedies_extra $(QUEUE_ARGS)
	$(DVC) repro report_remedies

## report: rebuild reports/<profile>/ from the runs' metrics (no training; unchanged runs change no file)
report: $(STAMP)
	$(DVC) repro --force --single-item report

## bench: speed measurements into reports/bench.md (heads vs stock, losses, data, dvc no-op)
bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out reports/bench.md

## gpu-wheels: download what the GPU check installs offline (cp312 wheels, mmcv source) into .whl/
GPU_PYVER ?= 3.12
gpu-wheels: $(STAMP)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYVER) \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
	  -c $(LOCK) -d .whl addict mmdet mmengine platformdirs pycocotools shapely \
	  termcolor terminaltables yapf
	$(PY) -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -c $(LOCK) -d .whl mmcv
	@# mmcv 2.1.0's setup.py imports pkg_resources (gone in setuptools 82): its build uses this one
	mkdir -p .whl/build && $(PY) -m pip download -q --no-deps --only-binary=:all: -c requirements/build.txt -d .whl/build setuptools

## gpu-check: on one NVIDIA GPU, offline: build mmcv's CUDA ops, train each family, write reports/gpu/
gpu-check:
	bash scripts/gpu_check.sh all

## clean-venv: remove the virtual environment (the pip cache is kept)
clean-venv:
	rm -rf $(VENV)
