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
