# bluegreen: every entry point a user or CI needs. Each target bootstraps what it uses.
#   make test          lint, then the unit + mocks + chart tiers, and e2e when the toolchain can be had
#   make lint          ruff and mypy (config in pyproject.toml), shellcheck on scripts/
#   make e2e           the end-to-end tier only, building whatever it needs
#   make up            deploy the `staging` stack (local cluster unless KUBECONFIG is yours)
#   make shell         a shell where the README's plain `pulumi`/`kubectl`/`helm` commands work
#   make pulumi-yaml   write Pulumi.yaml's config block from the key table (bluegreen/keys.py)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help venv lint pulumi-yaml helm chart-tools tools test e2e up down cluster-up cluster-down shell bench clean

help:
	@grep -E '^#   make' $(MAKEFILE_LIST) | sed 's/^#   //'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@echo "==> python venv in $(VENV) from requirements.txt + requirements-dev.txt, and the bluegreen command"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(STAMP)

# shellcheck at its default severity (info and style notes too: the scripts are clean at it); -x
# follows `source`d files. (scripts/langhost/ is Go: tests/langhost builds and checks it.)
SHELL_SCRIPTS := $(wildcard scripts/*.sh scripts/*/*.sh) scripts/activate .ci/run
lint: venv
	@echo "==> lint: ruff, mypy, shellcheck"
	@command -v shellcheck >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; }
	@$(VENV)/bin/ruff check --quiet
	@$(VENV)/bin/mypy
	@shellcheck -x $(SHELL_SCRIPTS)

# Pulumi.yaml declares every key (what `pulumi config` shows); the declarations are the key table's.
pulumi-yaml: venv
	@$(PY) -c 'import pathlib; from bluegreen.keys import declared_config; p = pathlib.Path("Pulumi.yaml"); \
	  t = p.read_text(); p.write_text(t[:t.index("\nconfig:\n") + 1] + declared_config())'

helm:
	@scripts/toolchain.sh helm

# What the chart tier runs: helm and kube-score.
chart-tools:
	@scripts/toolchain.sh chart

tools:
	@scripts/toolchain.sh all

# CI gets 90 minutes; e2e tools that cannot be built in the time left are skipped, loudly.
test: venv lint chart-tools
	@scripts/toolchain.sh --budget-minutes $${BLUEGREEN_TOOL_BUDGET_MINUTES:-55} e2e
	@source scripts/activate && $(PY) -m pytest

e2e: venv
	@scripts/toolchain.sh e2e
	@source scripts/activate && BLUEGREEN_REQUIRE_E2E=1 $(PY) -m pytest -m e2e

cluster-up: venv
	@scripts/toolchain.sh for-local
	@scripts/cluster.sh up

cluster-down:
	@scripts/cluster.sh down

# Builds only what the cluster in use needs: with your own KUBECONFIG, nothing for the local one.
up: venv
	@scripts/up.sh

down:
	@source scripts/activate && pulumi destroy --yes --stack $${STACK:-staging}

shell: venv
	@source scripts/activate && scripts/toolchain.sh for-$$BLUEGREEN_CLUSTER
	@echo "==> entering a shell with pulumi, kubectl and helm set up (exit to leave)"
	@bash --rcfile <(echo 'source ~/.bashrc 2>/dev/null; source scripts/activate; PS1="(bluegreen) $$PS1"') -i

bench: venv
	@scripts/toolchain.sh bench
	@source scripts/activate && $(PY) -m bench

clean: cluster-down
	rm -rf $(VENV) .state
