"""Linear algebra on the layer-wise Hessian shared by SparseGPT (and later GPTQ).

For a linear layer with inputs ``X`` (d x n) the reconstruction loss of a weight row ``w`` is
``||w X - w' X||^2 = 1/2 (w - w')^T H (w - w')`` with ``H = 2 X X^T``.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import PrunelibError


def drop_dead_inputs(H: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Handle input columns that never fired (``H[d, d] == 0``).

    Returns copies ``(H, W, dead)`` with ``H[d, d] = 1`` (so H is invertible) and
    ``W[:, d] = 0`` (the column never contributes, so zeroing it costs nothing).
    """
    H, W = H.clone(), W.clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    return H, W, dead


def inverse_cholesky_upper(H: torch.Tensor, percdamp: float = 0.01, *, max_tries: int = 6, name: str = "layer") -> torch.Tensor:
    r"""Upper Cholesky factor ``U`` of the damped inverse: ``(H + \lambda I)^{-1} = U^T U``.

    ``lambda = percdamp * mean(diag(H))``. Row ``i`` of ``U`` restricted to columns ``>= i``,
    divided by ``U[i, i]``, is exactly the OBS update direction for eliminating input ``i``
    after inputs ``< i`` are fixed, and ``U[i, i]^2`` is the matching ``[H_F^{-1}]_{ii}``.

    Computed in float32, or float64 when ``H`` is float64.
    If a factorization fails (H not positive definite in floating point), the damping grows
    tenfold and the attempt repeats with a warning; after ``max_tries`` it raises.
    """
    H = H if H.dtype == torch.float64 else H.float()
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    damp = percdamp * H.diagonal().mean().item()
    for attempt in range(max_tries):
        lower, info = torch.linalg.cholesky_ex(H + damp * eye)
        if info.item() == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if info.item() == 0:
                if attempt:
                    warnings.warn(
                        f"{name}: Cholesky failed with the default damping; succeeded with "
                        f"lambda = {damp:.3g} ({attempt} retries)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return upper
        damp = max(damp, 1e-8) * 10.0
    raise PrunelibError(f"{name}: Hessian is not positive definite even with damping {damp / 10:.3g}")


def relative_error(weight: torch.Tensor, new_weight: torch.Tensor, H: torch.Tensor) -> float:
    """Relative layer-wise reconstruction error ``||W X - W' X||^2 / ||W X||^2``.

    Computed from ``H = 2/n sum x x^T`` without the activations:
    ``||D X||^2 = n/2 tr(D H D^T)`` for ``D = W - W'``, and the factor cancels.
    """
    W, D = weight.float(), weight.float() - new_weight.float()
    return ((D @ H) * D).sum().item() / ((W @ H) * W).sum().item()
