# The entry points of the README:
#   make setup  create .venv: the package, PyTorch, Snakemake and the test tools
#   make try    set up .venv and build Table 1 of the tiny overlay into tiny/ (about a minute)
#   make demo   set up .venv and run the offline miniature of the whole pipeline
#   make study  set up .venv and decide the miniature's claims with 20 seeds, in study/
#   make test   set up .venv and run every check (ruff, snakefmt, snakemake --lint, pytest)
#   make results-docs RUN=<dir>   docs/results.md and the README's results block from a run
#               (STUDY=<dir> AGREEMENT=<files>: with the study's; KEEP_STUDY=1: keep its parts)
#   make gpu-check  the GPU check (benchmarks/gpu_check.py): on one NVIDIA GPU at most 8 min;
#               without one its reduced CPU mode; record and summary in results/gpu_check/
# CI (.ci/run) runs `make test` twice: as is, and with torch and oneDNN limited to AVX2 kernels
# (AVX2_ONLY below), so that a fault of the other instruction set shows up on any machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# Extra pytest arguments (e.g. PYTEST_ARGS='-m "not slurm"').
PYTEST_ARGS ?=

AVX2_ONLY := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2

# Where `make try` runs (its results/, logs/ and .snakemake/; apart from the demo's results/).
TRY_DIR ?= tiny
# Where `make study` runs (config/study.yaml), apart from the demo's results/.
STUDY_DIR ?= study

.PHONY: setup try demo study test test-avx2 results-docs gpu-check clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# torch and torchvision first, pinned: the versions every result in docs/ was measured with.
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

# try, demo: --scheduler greedy; the default ILP scheduler costs ~90 s of CPU over make demo.
try: setup
	$(BIN)/snakemake table1 --cores $(CORES) --scheduler greedy --configfile config/demo.yaml \
		config/tiny.yaml -d $(TRY_DIR)
	@echo "Table 1 of the tiny overlay: $(TRY_DIR)/results/tables/table1.md"

demo: setup
	$(BIN)/snakemake all --cores $(CORES) --scheduler greedy --configfile config/demo.yaml

study: setup
	$(BIN)/snakemake study --cores $(CORES) --configfile config/demo.yaml config/study.yaml \
		-d $(STUDY_DIR) --scheduler greedy
	@echo "The study's claims: $(STUDY_DIR)/results/tables/claims.md"

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The same checks on AVX2 kernels (what an AVX2-only CPU runs; a no-op change on such a CPU),
# less the SLURM test: it runs the same jobs as the tiny DAG run and costs minutes of CI.
test-avx2: setup
	$(AVX2_ONLY) $(MAKE) test PYTEST_ARGS='-m "not slurm"'

# The docs' result tables are generated from a run's results/, never typed (default: this
# directory's run, e.g. after `make demo`).
# STUDY=<dir> adds a finished `make study`; AGREEMENT='<file> ...' benchmarks/claims_agreement.py's
# outputs (the README shows the first).
RUN ?= .
STUDY ?=
AGREEMENT ?=
results-docs: setup
	$(BIN)/python docs/generate_results.py $(RUN) $(if $(STUDY),--study $(STUDY)) \
		$(if $(AGREEMENT),--agreement $(AGREEMENT)) $(if $(KEEP_STUDY),--keep-study)

# With GPU_CHECK_PY set (e.g. GPU_CHECK_PY=python3 on a GPU machine without internet, whose Python
# has torch and the wheels of benchmarks/gpu_wheels.txt), that Python runs it on this checkout's
# src/ and no .venv is made; otherwise .venv does.
GPU_CHECK_PY ?=
GPU_CHECK_OUT ?= results/gpu_check

gpu-check:
ifeq ($(GPU_CHECK_PY),)
	$(MAKE) setup
	$(BIN)/python benchmarks/gpu_check.py --out $(GPU_CHECK_OUT)
else
	PYTHONPATH=$(CURDIR)/src$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_CHECK_PY) benchmarks/gpu_check.py \
		--out $(GPU_CHECK_OUT)
endif

clean:
	rm -rf results logs .snakemake $(TRY_DIR) $(STUDY_DIR)
