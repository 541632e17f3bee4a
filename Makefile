# Two entry points for a fresh machine (see README.md):
#   make reproduce   set up .venv and run every notebook on the synthetic smoke profile
#   make test        set up .venv and run the tests plus the notebooks under nbval
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup reproduce test lab clean-results

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ffcore)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(PY) run_all.py --profile smoke

test: $(STAMP)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax --nbval-kernel-name python3 notebooks

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

clean-results:
	rm -rf results/smoke thesis_figures/smoke
