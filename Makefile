# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv (CPU PyTorch 2.13.0 from this machine's wheel), install varfam
# and its extras, and are idempotent: a second run only re-checks.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.varfam-installed

.PHONY: demo test test-all venv clean lint types

# pip, quiet: this machine's pip configuration names package indexes (file:// folders)
# that hold only some packages, and pip warns "Location '...' is ignored" once per
# package it looks up there; those lines are dropped, everything else pip prints is
# kept, and pip's exit status is kept too.
PIP_INSTALL = pip_install() { { $(BIN)/python -m pip install -q "$$@" 2>&1 || echo "varfam-pip-failed"; } \
	| awk '/^WARNING: Location .* is ignored/ { next } /^varfam-pip-failed$$/ { bad = 1; next } \
	{ print } END { exit bad }'; }; pip_install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade pip
	@$(PIP_INSTALL) torch==2.13.0
	@$(PIP_INSTALL) -e '.[test]'
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null 2>&1 \
		|| echo "note: dataset-fashion-mnist not installed (fashion-mnist tests will be skipped)"; fi
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		(export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq chromium chromium-driver || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)) >/dev/null 2>&1 \
		|| echo "note: chromium not installed (the explorer's browser test will be skipped)"; fi
	@if ! command -v g++ >/dev/null && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq g++ || (apt-get update -qq && apt-get install -y -qq g++)) >/dev/null 2>&1 \
		|| echo "note: g++ not installed (--compile and its tests need a C++ compiler)"; fi
	touch $(STAMP)

venv: $(STAMP)

# A second `make demo` keeps the trained run (and whatever was added to it, evaluations
# and pictures) instead of training it again: it only says where the run is.
demo: $(STAMP)
	@if [ -f runs/demo/model.safetensors ]; then \
		echo "runs/demo holds a trained run already: open runs/demo/report.html (to train it again: rm -r runs/demo && make demo)"; \
	else $(BIN)/varfam train --out runs/demo; fi

# make test: the CI suite without the tests marked slow (under 4 minutes on 2 cores: about
# 2 minutes with one pytest-xdist worker per core, 4 in one process);
# make test-all: everything, including the slow tier (torchrun, signals, compile-heavy
# tests, the full composition product). PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

# make docs: the documentation site (MkDocs Material + mkdocstrings; the `docs` extra,
# installed into .venv on first use) built with --strict into site/.
.PHONY: docs
DOCS_STAMP := $(VENV)/.varfam-docs-installed

$(DOCS_STAMP): pyproject.toml $(STAMP)
	@$(PIP_INSTALL) -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

# make lint / make types: what CI runs besides the tests (ruff; mypy on src, strict on the
# public API, see [tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

types: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf runs .pytest_cache
