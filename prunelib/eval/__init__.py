"""Layer 5: measurements. Perplexity under the GPTQ protocol, zero-shot accuracy through
lm-eval (an optional extra), per-unit sensitivity, and the speed of sparse kernels
(:mod:`prunelib.eval.speed`). Uses core, data, model and storage.
"""
