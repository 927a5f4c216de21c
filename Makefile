# bext developer entry points. Everything installs from this repository's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit demo bench deb deb-test clean

$(STAMP): pyproject.toml integrations/django-bext/pyproject.toml
	scripts/system-deps.sh test
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,waf,otel]'
	$(PY) -m pip install -q -e integrations/django-bext
	touch $(STAMP)

## make test: install what the tests need, then lint, type-check and run the whole suite
test: $(STAMP) lint typecheck
	$(PY) -m pytest -q integrations/django-bext/tests
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check bext tests bench demo integrations
	$(VENV)/bin/ruff format --check bext tests bench demo integrations

typecheck: $(STAMP)
	$(VENV)/bin/mypy bext
	cd integrations/django-bext && ../../$(VENV)/bin/mypy

## make demo: the demo Django app under Gunicorn, behind bext on http://127.0.0.1:3000
## (DEMO_SERVER=uvicorn for Uvicorn; Ctrl-C stops both)
demo: $(STAMP)
	scripts/demo.sh

## make bench: bext side by side with nginx (installs nginx-light, wrk, h2load, and
## libnginx-mod-http-modsecurity + modsecurity-crs for the WAF comparison)
bench: $(STAMP)
	scripts/system-deps.sh bench
	$(PY) -m pip install -q -e '.[test,bench,waf]'
	$(PY) bench/run.py

## make deb: the Debian package, dist/bext_VERSION_amd64.deb (apt-installs the build tools;
## pip needs the package index for the package's private virtualenv)
deb:
	scripts/system-deps.sh deb
	packaging/build-deb.sh

## make deb-test: build, lintian, install, run it as bext.service would, purge (root or sudo)
deb-test:
	scripts/deb-test.sh

clean:
	rm -rf $(VENV) build build-deb dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
