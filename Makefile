# The two entry points of the README:
#   make demo   set up .venv and run the offline miniature of the whole pipeline
#   make test   set up .venv and run every check (ruff, snakefmt, snakemake --lint, pytest)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# torch and torchvision first, pinned: an unpinned torch may pull several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/snakemake all --cores $(CORES) --configfile config/demo.yaml

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint
	$(BIN)/pytest

clean:
	rm -rf results logs .snakemake
