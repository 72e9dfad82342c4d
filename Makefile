# Scones Unlimited ML Workflow: every target installs what it needs, and is safe to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3

VENV           := .venv
VENV_MINISTACK := .venv-ministack
VENV_PYTORCH   := .venv-pytorch
# The SageMaker Python SDK as users install it, v3 and v2 (one distribution name, so a venv each): tests/sdk.
VENV_SDK_V3    := .venv-sdk-v3
VENV_SDK_V2    := .venv-sdk-v2
PY             := $(VENV)/bin/python
LOCALCLOUD     := $(PY) -m localcloud

.PHONY: help venvs up down status credentials test lint clean-state fixture demo airflow bench

help:  ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# --- virtual environments (a stamp per requirements file, so edits re-install) --------------
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# MiniStack is patched where it differs from AWS (localcloud/ministack/patches/); the patcher checks the pin.
$(VENV_MINISTACK)/.installed: localcloud/ministack/requirements.txt localcloud/ministack/patch.py \
		$(wildcard localcloud/ministack/patches/*.patch)
	test -x $(VENV_MINISTACK)/bin/python || $(PYTHON) -m venv $(VENV_MINISTACK)
	$(VENV_MINISTACK)/bin/python -m pip install -q -r localcloud/ministack/requirements.txt
	@# A patch changed since this checkout applied it: start again from the pristine pinned package.
	$(VENV_MINISTACK)/bin/python -m localcloud.ministack.patch || { \
		$(VENV_MINISTACK)/bin/python -m pip install -q --force-reinstall --no-deps \
			"$$(grep '^ministack==' localcloud/ministack/requirements.txt)" && \
		$(VENV_MINISTACK)/bin/python -m localcloud.ministack.patch; }
	touch $@

$(VENV_PYTORCH)/.installed: localcloud/sagemaker/requirements-pytorch.txt
	test -x $(VENV_PYTORCH)/bin/python || $(PYTHON) -m venv $(VENV_PYTORCH)
	$(VENV_PYTORCH)/bin/python -m pip install -q -r localcloud/sagemaker/requirements-pytorch.txt
	touch $@

$(VENV_SDK_V3)/.installed: tests/sdk/requirements-v3.txt
	test -x $(VENV_SDK_V3)/bin/python || $(PYTHON) -m venv $(VENV_SDK_V3)
	$(VENV_SDK_V3)/bin/python -m pip install -q -r tests/sdk/requirements-v3.txt
	touch $@

$(VENV_SDK_V2)/.installed: tests/sdk/requirements-v2.txt
	test -x $(VENV_SDK_V2)/bin/python || $(PYTHON) -m venv $(VENV_SDK_V2)
	$(VENV_SDK_V2)/bin/python -m pip install -q -r tests/sdk/requirements-v2.txt
	touch $@

venvs: $(VENV)/.installed $(VENV_MINISTACK)/.installed $(VENV_PYTORCH)/.installed  ## Install all virtual environments
venvs: $(VENV_SDK_V3)/.installed $(VENV_SDK_V2)/.installed

# --- local cloud ------------------------------------------------------------------------------
up: venvs  ## Start MiniStack and the local SageMaker on 127.0.0.1 (idempotent)
	$(LOCALCLOUD) up

down:  ## Stop the local cloud (flushes data capture first)
	@if [ -x $(PY) ]; then $(LOCALCLOUD) down; fi

status:  ## Show whether the local cloud is running
	$(LOCALCLOUD) status

credentials:  ## Write .localcloud/env (0600) with the local cloud's keys, starting nothing (for compose; stdlib only)
	$(PYTHON) -m localcloud credentials

clean-state: down  ## Delete all local cloud state (.localcloud/)
	rm -rf $${LOCALCLOUD_HOME:-.localcloud}

# --- the mission -----------------------------------------------------------------------------
fixture: $(VENV)/.installed  ## Build a CIFAR-100-format archive from datasets/ and print its MD5 (SOURCE=, OUTPUT=)
	$(PY) -m tools.fixture $(if $(SOURCE),--source $(SOURCE)) $(if $(OUTPUT),--output $(OUTPUT))

demo: up  ## Run the whole mission on the local cloud and print a summary (SCONES_CIFAR_URL/MD5 for a mirror)
	$(PY) tools/demo.py

airflow: up  ## Airflow UI on http://127.0.0.1:8080 (or AIRFLOW_PORT) wired to the local cloud; Ctrl-C stops it
	$(PY) tools/airflow_local.py serve

bench: up  ## Measure everything, write benchmarks/latest.{json,md} (BENCH_ONLY=endpoint,... BENCH_DEMO=0)
	$(PY) benchmarks/bench.py $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

# --- quality ----------------------------------------------------------------------------------
test: venvs  ## Run the whole test suite (unit, contract, end-to-end)
	$(PY) -m pytest

lint: venvs  ## ruff (with Airflow's AIR rules) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy localcloud include tools benchmarks
	# Each Lambda zip has its own top-level lambda_function/logic modules, as on AWS: one mypy run per folder.
	for fn in lambdas/*/; do $(VENV)/bin/mypy "$$fn" || exit 1; done
	# The tuner and its experiments import train.py as the training job does (top-level `train`): checked against it.
	MYPYPATH=include/model $(VENV)/bin/mypy benchmarks/experiments.py benchmarks/tune_model.py
