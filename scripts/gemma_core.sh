#!/usr/bin/env bash
# The core table on the second embedded model, Gemma-3-270M, under the cpu protocol
# (64 x 1024 C4 calibration tokens, seed 0; WikiText-2 test, first 16 windows of 2048).
# Resumable: a run whose JSON exists is skipped. Usage: bash scripts/gemma_core.sh [results dir]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-results/gemma3-270m}"
mkdir -p "$out"
common=(--model gemma3-270m --nsamples 64 --calib-seqlen 1024 --eval-seqlen 2048 --max-windows 16 --seed 0 --quiet)
run() {  # name, then prunelib prune options
    local name="$1"; shift
    [ -f "$out/$name.json" ] && { echo "skip $name (done)"; return; }
    echo "run $name"; .venv/bin/prunelib prune "${common[@]}" "$@" --json "$out/$name.json"
}
run dense --method dense
run wanda-50 --method wanda --sparsity 0.5
run wanda-2of4 --method wanda --nm 2:4
run sparsegpt-50 --method sparsegpt --sparsity 0.5
run sparsegpt-2of4 --method sparsegpt --nm 2:4
run magnitude-50 --method magnitude --sparsity 0.5
run magnitude-2of4 --method magnitude --nm 2:4
