# The course's task runner. A newcomer needs two commands:
#   make book   set everything up, run the chapters on synthetic data (CPU) and build the book
#   make test   set everything up and run the whole test suite (what CI runs)
# Both install into ./.venv on first use and are quick when it is already installed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup book book-runs test test-fast lint format recipes references bench gpu-check lab clean help

help:
	@echo "make book | make test | make test-fast | make lab | make bench | make gpu-check | make lint | make format | make recipes | make clean"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build book/ -W --keep-going

# After full GPU runs (papermill outputs under runs/): render them instead of re-running.
book-runs: $(STAMP)
	$(BIN)/python -m lessons_lib.book use-runs --build

# Lint, the notebook-strip check, then every test: unit tests, papermill runs of every chapter,
# the strict book build (rendering those runs), and nbval over every notebook. Two workers
# (pytest-xdist); --dist loadscope keeps a notebook's nbval cells, and each test module, on one
# worker, but sends each notebook run of tests/notebooks/ on its own (the scheduler in
# tests/conftest.py, which also lists every kernel the suite starts).
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadscope --nbval-lax --durations=15 tests notebooks

# Unit tests only (no notebook execution, no book build): seconds, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not notebooks and not book and not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/nbstripout --keep-count --verify notebooks/*.ipynb
	$(BIN)/python -m lessons_lib.recipes sync --check
	$(BIN)/python -m lessons_lib.book.colab --check

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/nbstripout --keep-count notebooks/*.ipynb

# nbval's reference outputs: run every notebook (smoke) and write its NBVAL_CHECK_OUTPUT cells'
# outputs into the committed notebook (after changing anything such a cell prints).
references: $(STAMP)
	$(BIN)/python -m lessons_lib.book.references

# Each notebook's papermill parameters cell, written from its recipe (lessons_lib/recipes/),
# and its first cell, the Colab install cell, from _config.yml's repository url.
recipes: $(STAMP)
	$(BIN)/python -m lessons_lib.recipes sync
	$(BIN)/python -m lessons_lib.book.colab

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# On a CUDA machine: every chapter's full-profile training step measured against its cost
# estimate (images/s, memory, fp16 vs fp32), one table and runs/gpu-check.json; a few minutes.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out runs/gpu-check.json

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf book/_build runs .pytest_cache
