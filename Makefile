# Every target installs into .venv first (from requirements.txt) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SEED ?= 0

.PHONY: book test test-fast reproduce bench clean check-pages screenshots shapes degree3 paper-scale

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

## the book: execute every chapter at its default parameters into jupyter-book's cache, one chapter per core
## (scripts/execute_book.py), then HTML with warnings as errors
book: $(VENV)/.installed
	$(BIN)/python scripts/execute_book.py
	$(BIN)/jupyter-book build . -W -n --keep-going

## the built pages in headless Chromium (installs Debian's chromium when missing): every image loads,
## no figure is empty, every saved widget has its state; builds nothing (run `make book` first)
check-pages: $(VENV)/.installed
	$(BIN)/python scripts/check_pages.py _build/html

## the same check, writing a full-page PNG of every page into _build/screenshots/
screenshots: $(VENV)/.installed
	$(BIN)/python scripts/check_pages.py _build/html --screenshots _build/screenshots

## the GPT chapters re-executed by papermill at other task shapes, as a reader would run them: every training
## setting comes from the recipe (nexttok.recipe). SHAPES is a list of deg,path_len,num_nodes; each chapter's
## return code and wall time go to _build/shapes/shapes.csv. `make degree3` is the one shape G(3,5), N=20.
SHAPES ?= 3,5,20
shapes: $(VENV)/.installed
	$(BIN)/python scripts/run_shapes.py --shapes $(SHAPES)

degree3: $(VENV)/.installed
	$(BIN)/python scripts/run_shapes.py --shapes 3,5,20

## the paper's scale on one GPU within a time budget (scripts/paper_scale.sh): writes paper_scale/
paper-scale: $(VENV)/.installed
	PATH=$(abspath $(BIN)):$$PATH bash scripts/paper_scale.sh paper_scale

## the tests: unit, CLI, end-to-end, and every chapter executed and checked by nbval; one pytest-xdist worker
## per core, each file (a chapter's cells) on one worker, longest first (conftest.py orders them)
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --nbval-lax --nbval-current-env book tests

## the fast tier, for every edit: the unit, CLI and reliability tests, no chapter, install, build or second process
## (under a minute on 2 cores)
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n auto -m "not slow" tests

## the headline at the default CPU scale: forward fails (about 1/d), reverse learns (about 100%)
reproduce: $(VENV)/.installed
	$(BIN)/nexttok train --mode forward --seed $(SEED) --out runs/forward-s$(SEED) --resume
	$(BIN)/nexttok train --mode reverse --seed $(SEED) --out runs/reverse-s$(SEED) --resume

## speed at the default CPU scale (with the authors'-style loop beside it) and at the authors' config
bench: $(VENV)/.installed
	$(BIN)/nexttok bench --json --baseline
	$(BIN)/nexttok bench --json --layers 6 --dim 384 --heads 6 --num-nodes 50 --positions learned --train-steps 3

clean:
	rm -rf $(VENV) runs book/runs _build .jupyter_cache paper_scale
