# The portal's commands. `make run` starts the whole demo; `make test` runs every test.
# Everything runs from .venv, installed from requirements.lock (hashes checked, no resolver).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# The copy of the lock that was last installed: the stamp. A changed lock reinstalls; a lock
# that was only touched (a checkout) does not.
STAMP := $(VENV)/.requirements.lock.installed
# The venv finds this checkout's packages (portal, tests, ...) from any working directory,
# which `pytest -p tests.plugin` needs before pytest itself adds anything to sys.path.
PTH := $(VENV)/lib/python3.11/site-packages/mfa-helpdesk-portal.pth

.PHONY: help run test lint lint-mypy bench clean distclean venv screenshots

help:
	@echo "make run    start the demo: emulator, portal on http://127.0.0.1:$${PORTAL_PORT:-8000}, worker, beat"
	@echo "make test   run the whole test suite (SQLite and an embedded Redis unless DATABASE_URL/REDIS_URL)"
	@echo "make lint   ruff check, ruff format --check, mypy, djlint"
	@echo "make screenshots  run the browser journeys and rewrite docs/screenshots/*.png"
	@echo "make bench  run every benchmark (bench/*.py) and the load test, write bench/RESULTS.md"
	@echo "make clean  remove var/ and caches (distclean also removes .venv)"

# python3.11, or python3 when that is 3.11: the lock is for 3.11 only.
$(PY):
	@set -e; \
	base=$$(command -v python3.11 || true); \
	if [ -z "$$base" ] && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		base=$$(command -v python3); \
	fi; \
	if [ -z "$$base" ]; then echo "Python 3.11 is needed (python3.11 or a python3 that is 3.11)" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$base"; \
	"$$base" -m venv $(VENV)

$(STAMP): requirements.lock | $(PY)
	@set -e; \
	if ! cmp -s requirements.lock $(STAMP); then \
		echo "installing requirements.lock into $(VENV)"; \
		$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements.lock; \
		cp requirements.lock $(STAMP); \
	else \
		touch $(STAMP); \
	fi

$(PTH): | $(PY)
	@echo "$(CURDIR)" > $(PTH)

venv: $(STAMP) $(PTH)

run: venv
	$(PY) -m portal.devrun

# pytest's own exit status is kept (5 when it collected nothing is a failure too).
# Parallel pytest workers (pytest-xdist, whole files per worker): each has its own
# emulator, var folder, test database and Redis database (tests/plugin.py). PYTEST_WORKERS=0
# runs in one process. Three workers on PostgreSQL (DATABASE_URL set: CI's 1,700 tests in about
# 6.5 min instead of 9 on two cores); two on SQLite, where three made the browser sign-ins time
# out under the load of three live servers on two cores.
PYTEST_WORKERS ?= $(if $(DATABASE_URL),3,2)
test: venv
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The browser journeys again, writing the README's pictures into docs/screenshots.
screenshots: venv
	PORTAL_WRITE_SCREENSHOTS=1 $(VENV)/bin/pytest -m browser -q

# mypy and djLint load nothing from the environment, but the django-stubs plugin imports the
# settings, which need these values; they are the demo's and reach no service (the demo starts
# only with the emulator's tenant on loopback).
LINT_ENV := PORTAL_DEMO=1 PORTAL_VAR_DIR=$(CURDIR)/var/lint REDIS_URL=redis://127.0.0.1:6379/0 \
	ENTRA_TENANT_ID=8f2d1c3a-5b6e-4f70-9a81-2c3d4e5f6a7b ENTRA_LOGIN_HOST=127.0.0.1:8443 \
	GRAPH_URL=https://127.0.0.1:8443 ENTRA_CLIENT_ID=lint ENTRA_CLIENT_SECRET=lint DATABASE_URL= \
	DJANGO_SECRET_KEY= ENTRA_CLIENT_CERT_PATH= ENTRA_CLIENT_SECRET_FILE= DJANGO_SECRET_KEY_FILE=

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory lint-mypy
	$(VENV)/bin/djlint --lint templates

lint-mypy: venv
	env $(LINT_ENV) $(VENV)/bin/mypy .

# Every bench/*.py, each in its own time-limited subprocess; writes bench/RESULTS.md. The ones
# that need PostgreSQL run when DATABASE_URL names one, else they are reported as skipped.
bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf var staticfiles .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
