# Scones Unlimited ML Workflow: every target installs what it needs, and is safe to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3

VENV           := .venv
VENV_MINISTACK := .venv-ministack
VENV_PYTORCH   := .venv-pytorch
PY             := $(VENV)/bin/python
LOCALCLOUD     := $(PY) -m localcloud

.PHONY: help venvs up down status test lint clean-state

help:  ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# --- virtual environments (a stamp per requirements file, so edits re-install) --------------
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV_MINISTACK)/.installed: localcloud/ministack/requirements.txt
	test -x $(VENV_MINISTACK)/bin/python || $(PYTHON) -m venv $(VENV_MINISTACK)
	$(VENV_MINISTACK)/bin/python -m pip install -q -r localcloud/ministack/requirements.txt
	touch $@

$(VENV_PYTORCH)/.installed: localcloud/sagemaker/requirements-pytorch.txt
	test -x $(VENV_PYTORCH)/bin/python || $(PYTHON) -m venv $(VENV_PYTORCH)
	$(VENV_PYTORCH)/bin/python -m pip install -q -r localcloud/sagemaker/requirements-pytorch.txt
	touch $@

venvs: $(VENV)/.installed $(VENV_MINISTACK)/.installed $(VENV_PYTORCH)/.installed  ## Install all virtual environments

# --- local cloud ------------------------------------------------------------------------------
up: venvs  ## Start MiniStack and the local SageMaker on 127.0.0.1 (idempotent)
	$(LOCALCLOUD) up

down:  ## Stop the local cloud (flushes data capture first)
	@if [ -x $(PY) ]; then $(LOCALCLOUD) down; fi

status:  ## Show whether the local cloud is running
	$(LOCALCLOUD) status

clean-state: down  ## Delete all local cloud state (.localcloud/)
	rm -rf $${LOCALCLOUD_HOME:-.localcloud}

# --- quality ----------------------------------------------------------------------------------
test: venvs  ## Run the whole test suite (unit, contract, end-to-end)
	$(PY) -m pytest

lint: venvs  ## ruff (with Airflow's AIR rules) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy localcloud
