"""SparseGPT: exact mask counts, the Cholesky form against sequential OBS, and error ordering."""

import warnings

import pytest
import torch

from prunelib.core.hessian import inverse_cholesky_upper
from prunelib.core.magnitude import magnitude
from prunelib.core.masks import NM, n_pruned, unstructured_mask
from prunelib.core.sparsegpt import sparsegpt
from prunelib.core.stats import HessianStat, InputNormStat
from prunelib.core.wanda import wanda
from prunelib.errors import PrunelibError


def correlated_problem(rows=16, cols=32, tokens=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5 + torch.eye(cols)
    X = torch.randn(tokens, cols, generator=g) @ mix * torch.linspace(0.2, 3.0, cols)
    W = torch.randn(rows, cols, generator=g)
    stat = HessianStat(cols)
    stat.update(X)
    return W, X, stat.H


def naive_sparsegpt(W, H, sparsity, blocksize, percdamp=0.01):
    """Sequential OBS, one column at a time, with explicit inverses of the remaining Hessian.

    No Cholesky factor, no lazy batches: the slow definition SparseGPT must agree with.
    """
    W, H = W.double().clone(), H.double().clone()
    H += percdamp * H.diagonal().mean() * torch.eye(H.shape[0], dtype=H.dtype)
    cols = W.shape[1]
    keep = torch.ones_like(W, dtype=torch.bool)
    for start in range(0, cols, blocksize):
        block = range(start, min(start + blocksize, cols))
        d2 = torch.stack([torch.linalg.inv(H[j:, j:])[0, 0] for j in block])
        keep[:, start:block.stop] = unstructured_mask(W[:, start:block.stop] ** 2 / d2, sparsity, "matrix")
        for j in block:
            H_inv = torch.linalg.inv(H[j:, j:])  # over the columns not yet fixed
            pruned = ~keep[:, j]
            W[pruned, j:] -= (W[pruned, j] / H_inv[0, 0]).unsqueeze(1) * H_inv[0].unsqueeze(0)
            W[pruned, j] = 0.0
    return W, keep


@pytest.mark.parametrize("blocksize", [8, 12, 32])
def test_matches_sequential_obs(blocksize):
    W, _, H = correlated_problem()
    result = sparsegpt(W, H, sparsity=0.5, blocksize=blocksize)
    expected, keep = naive_sparsegpt(W, H, 0.5, blocksize)
    assert torch.equal(result.mask, keep)
    torch.testing.assert_close(result.weight.double(), expected, rtol=1e-4, atol=1e-4)


def test_upper_factor_of_inverse():
    _, _, H = correlated_problem()
    H = H.double()
    U = inverse_cholesky_upper(H, percdamp=0.0)
    assert torch.allclose(U, U.triu())
    torch.testing.assert_close(U.T @ U, torch.linalg.inv(H), rtol=1e-7, atol=1e-9)
    # U[i, i]^2 is [H_F^-1]_ii for F = columns >= i: the OBS denominator after eliminating < i
    for i in (0, 5, 20):
        torch.testing.assert_close(U[i, i] ** 2, torch.linalg.inv(H[i:, i:])[0, 0], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cols,blocksize", [(320, 128), (96, 32)])
def test_exact_count_per_block_even_with_ties(cols, blocksize):
    W, _, H = correlated_problem(rows=12, cols=cols)
    W = torch.round(W * 2) / 2  # few distinct values, like dequantized weights
    result = sparsegpt(W, H, sparsity=0.5, blocksize=blocksize)
    for start in range(0, cols, blocksize):
        block = result.mask[:, start : start + blocksize]
        assert (~block).sum() == n_pruned(block.numel(), 0.5)
    assert torch.all(result.weight[~result.mask] == 0)


def test_nm_pattern_exact():
    W, _, H = correlated_problem(cols=64)
    result = sparsegpt(W, H, nm=NM(2, 4), blocksize=32)
    assert torch.all(result.mask.reshape(16, -1, 4).sum(-1) == 2)
    assert torch.all(result.weight[~result.mask] == 0)


def test_zero_sparsity_leaves_weights_unchanged():
    W, _, H = correlated_problem()
    torch.testing.assert_close(sparsegpt(W, H, sparsity=0.0).weight, W)


def test_dead_inputs_are_zeroed_and_harmless():
    W, X, _ = correlated_problem()
    X[:, [3, 17]] = 0.0
    stat = HessianStat(X.shape[1])
    stat.update(X)
    result = sparsegpt(W, stat.H, sparsity=0.5, blocksize=8)
    assert torch.all(result.weight[:, [3, 17]] == 0)
    assert torch.isfinite(result.weight).all()


def test_cholesky_failure_retries_with_more_damping_and_warns():
    H = torch.zeros(8, 8)
    H[0, 0] = 1.0
    H[1:, 1:] = -1.0  # indefinite: the default damping cannot fix it
    with pytest.warns(RuntimeWarning, match="Cholesky"):
        U = inverse_cholesky_upper(H, percdamp=0.01, max_tries=12)
    assert torch.isfinite(U).all()
    with pytest.raises(PrunelibError, match="positive definite"):
        inverse_cholesky_upper(-torch.eye(4), percdamp=0.01, max_tries=2)


def test_no_warning_for_a_healthy_hessian():
    _, _, H = correlated_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inverse_cholesky_upper(H)


def reconstruction_error(W, W_new, X):
    return ((X @ W.T - X @ W_new.T) ** 2).sum().item()


@pytest.mark.parametrize("pattern", [None, NM(2, 4)], ids=["50%", "2:4"])
def test_error_order_on_synthetic_correlated_inputs(pattern):
    W, X, H = correlated_problem(rows=64, cols=128, tokens=1024)
    norms = InputNormStat(128)
    norms.update(X.unsqueeze(0))
    errors = [
        reconstruction_error(W, method.weight, X)
        for method in (
            sparsegpt(W, H, sparsity=0.5, nm=pattern),
            wanda(W, norms.norms, sparsity=0.5, nm=pattern),
            magnitude(W, sparsity=0.5, nm=pattern),
        )
    ]
    assert errors[0] < errors[1] < errors[2]


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [None, NM(2, 4)], ids=["50%", "2:4"])
def test_error_order_on_real_activations(embedded, pattern):
    """Inputs of block 3's gate/up projections on real C4 text from the embedded model."""
    from prunelib import data
    from prunelib.model.architecture import decoder_blocks

    model, tokenizer = embedded
    windows, _ = data.c4_calibration(tokenizer, nsamples=4, seqlen=128, seed=0)
    captured = []
    layer = decoder_blocks(model)[3].mlp.up_proj
    handle = layer.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    with torch.no_grad():
        model(windows, use_cache=False)
    handle.remove()
    X = captured[0].reshape(-1, captured[0].shape[-1])
    hessian, norms = HessianStat(X.shape[1]), InputNormStat(X.shape[1])
    hessian.update(captured[0])
    norms.update(captured[0])
    W = layer.weight.detach()
    errors = [
        reconstruction_error(W, result.weight, X)
        for result in (
            sparsegpt(W, hessian.H, sparsity=0.5, nm=pattern),
            wanda(W, norms.norms, sparsity=0.5, nm=pattern),
            magnitude(W, sparsity=0.5, nm=pattern),
        )
    ]
    assert errors[0] < errors[1] < errors[2], errors
