# Set-up is part of every target: a fresh machine needs nothing but python3 (>=3.10).
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PY      = $(VENV)/bin/python

.PHONY: demo test bench-patchcore clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip -c constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[train,test,faiss,serve,ray]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/defectkit demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# ---- lint, type check, docs (the dev extra: ruff, mypy, mkdocs) -------------------------
.PHONY: lint typecheck docs check

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $@

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy

docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

check: lint typecheck docs test
