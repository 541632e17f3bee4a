# Entry points for a fresh machine (see README.md):
#   make reproduce   set up .venv and run the default study: `full` with WIDER FACE and CUDA,
#                    otherwise `synthetic` (about an hour on a 2-core CPU). The pinned torch is a
#                    CUDA 13 build: it needs NVIDIA driver >= 580, or it sees no GPU and the run is
#                    `synthetic`, with a NOTICE saying why (README: Running the full study)
#   make smoke       the tiny smoke profile (a few minutes): checks the pipeline, not the models
#   make test        set up .venv and run the tests plus smoke copies of the notebooks under nbval
#                    (the end-to-end study run, marked slow, is left to make test-all)
#   make test-all    the same with the slow tests
#   make lab         JupyterLab on the notebooks (also as root, as in containers)
#   make peers       .venv-peers with the peer detectors (MTCNN, BlazeFace, dlib, Haar) for bench_peers.py
#   make thesis      the results chapter of PROFILE (default synthetic): thesis_figures/<profile>/chapter.pdf
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup reproduce smoke test test-all lab clean-results

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ffcore)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(PY) run_all.py

smoke: $(STAMP)
	$(PY) run_all.py --profile smoke

# The committed notebooks hold the outputs of a study run (run_all.py --in-place); nbval runs copies without the
# injected parameters (so the smoke defaults apply) and checks only the data-free cells. The tests marked slow
# (an end-to-end run_all.py that executes the notebooks a second time) run only in test-all.
PYTEST_SELECT ?= -m "not slow"
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_SELECT) tests
	$(PY) -c "from ffcore.runs.notebooks import write_smoke_copies; write_smoke_copies('notebooks', '.nbval')"
	$(PY) -m pytest -q --nbval-lax --nbval-kernel-name python3 .nbval

test-all:
	$(MAKE) test PYTEST_SELECT=

# JupyterLab refuses to start as root without --allow-root (containers often run as root).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks

clean-results:
	rm -rf results/smoke thesis_figures/smoke

# The results chapter of a profile from the tables and figures its notebooks wrote: every table's .tex
# re-rendered from its CSV, numbers.tex, results.tex, chapter.tex, then latexmk. Without TeX it stops
# and names what to install (texlive-latex-recommended texlive-latex-extra latexmk).
PROFILE ?= synthetic
.PHONY: thesis
thesis: $(STAMP)
	$(PY) -m ffcore thesis --profile $(PROFILE)

# Peer detectors (MTCNN, BlazeFace, dlib HOG, Haar cascade) in an environment of their own:
# their pins (numpy < 2, protobuf < 5, OpenCV 4 for the cascade files) do not fit .venv.
# facenet-pytorch pins torch 2.2 and mediapipe wants jax: both go in with --no-deps on top of
# requirements-peers.txt (torch from the main pins; see the comments there).
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): requirements-peers.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q -r requirements-peers.txt
	$(PEERS_VENV)/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0 mediapipe==0.10.21
	$(PEERS_VENV)/bin/python -c "from ffcore.bench.peers import load_peers; _, s = load_peers(); assert not s, s"
	touch $(PEERS_STAMP)

.PHONY: peers
peers: $(PEERS_STAMP)
