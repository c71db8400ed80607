# tinyproto: one target per thing a person does.
#   make setup      virtual environment at .venv (idempotent; fast when nothing changed)
#   make data       locate or install the embedded Fashion-MNIST, say which source was used
#   make test       lint + unit tests + every notebook executed by nbval (smoke profile, fresh
#                   runs in the git-ignored results/smoke/; any other profile fails)
#   make reproduce  run the notebooks with papermill (PROFILE=quick|paper), refresh figures/ results/
#   make lab        JupyterLab on notebooks/
#   make scorecard  compute the missing runs of PROFILE's claims (quick by default; long/hard: hours), then judge them

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data test test-slow lint reproduce lab clean-runs

setup: $(STAMP)

# torch and torchvision are resolved together from PyPI (never a local CPU-only torch file).
# setuptools' notice that the install is editable is information, not a problem to fix: hidden.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[notebooks,dev,flower]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

data: $(STAMP)
	@if [ -z "$$TINYPROTO_DATA" ] && [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
	  echo "make data: installing Debian's dataset-fashion-mnist"; \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	    || echo "make data: apt-get failed; trying the other sources"; \
	fi
	@$(PY) -m tinyproto data

lint: $(STAMP)
	$(PY) -m ruff check tinyproto tests notebooks/conftest.py

# unit tests + every notebook under nbval (smoke profile: seconds per notebook). Each notebook
# reads TINYPROTO_PROFILE in its parameters cell and require_profile() stops it when the profile
# differs from TINYPROTO_REQUIRE_PROFILE; notebooks/conftest.py deletes the smoke outputs first
# and checks that every notebook printed "profile: smoke". Nothing tracked by git is written.
test: data lint
	TINYPROTO_PROFILE=smoke TINYPROTO_REQUIRE_PROFILE=smoke \
	  $(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env

test-slow: data
	$(PY) -m pytest -q -m slow

reproduce: data
	$(PY) -m tinyproto reproduce --profile $(PROFILE)

# as root (containers, CI machines) Jupyter refuses to start without --allow-root
lab: data
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

clean-runs:
	rm -rf results/runs

# the paper's claims judged on the finished runs (results/scorecard.csv, docs/scorecard.md's table),
# after computing the missing runs of PROFILE's claims (quick by default: minutes; long or hard:
# hours on 2 cores; resumable: rerun after an interruption, finished runs are reused)
.PHONY: scorecard
scorecard: data
	$(PY) -m tinyproto scorecard --compute $(PROFILE) --update-docs

# Flower (the flower extra, installed by make setup): a local federation on 127.0.0.1 with TLS and
# SuperNode authentication (throw-away credentials), whose processes are stopped by PID at the end
# (tinyproto.flower.deploy; free ports each time). FLOWER_FLAGS=--insecure: plaintext, no auth.
#   make flower-local RUN_CONFIG="algorithm='fedproto' rounds=5"  SuperLink + a SuperNode per client
#   make flower-sim RUN_CONFIG="..."                               Flower's simulation runtime (Ray)
#   make test-flower   deployment = in-process bit for bit, a killed SuperNode, refused nodes and
#                      uploads (minutes; CI runs it)
RUN_CONFIG ?=
FLOWER_FLAGS ?=
.PHONY: flower-local flower-sim test-flower

flower-local: data
	$(PY) -m tinyproto.flower.deploy $(FLOWER_FLAGS) --run-config "$(RUN_CONFIG)"

flower-sim: data
	$(PY) -m tinyproto.flower.deploy --simulation $(FLOWER_FLAGS) --run-config "$(RUN_CONFIG)"

test-flower: data
	$(PY) -m pytest -q -m slow tests/test_flower_deploy.py tests/test_flower_secure.py
