"""Layer 3: a whole model. Loading (embedded GGUF, directories, hub ids), architecture facts
discovered from the model (blocks, linears, MLP and attention layout, experts), the block walk
that replays each block's own arguments, and prune / shrink / quantize / fine-tune a model,
plus the provenance records. Uses :mod:`prunelib.core` and :mod:`prunelib.data`, and transformers.
"""
