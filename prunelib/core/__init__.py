"""Layer 1, the part people copy: pure math on tensors, needing torch only.

Weights are ``(out_features, in_features)``; masks are boolean with ``True`` = kept; statistics
are of a linear's inputs ``X`` ``(tokens, in_features)``.

* :mod:`~prunelib.core.masks`: exact-count and N:M masks, :class:`~prunelib.core.masks.Pruned`;
* :mod:`~prunelib.core.magnitude`, :mod:`~prunelib.core.wanda`, :mod:`~prunelib.core.obs`,
  :mod:`~prunelib.core.sparsegpt`: the methods; :mod:`~prunelib.core.methods` registers them;
* :mod:`~prunelib.core.stats`, :mod:`~prunelib.core.hessian`: input statistics, damped inverses;
* :mod:`~prunelib.core.quantize`, :mod:`~prunelib.core.gptq`: integer quantization;
* :mod:`~prunelib.core.structured`: channel and head scores, least-squares refits;
* :mod:`~prunelib.core.permutation`: channel permutation for N:M;
* :mod:`~prunelib.core.allocate`: non-uniform sparsity per block (inverse sensitivity, OWL).

Copy ``core/`` with ``errors.py``; nothing else is needed.
"""
