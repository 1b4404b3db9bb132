"""GPTQ and SparseGPT's joint mode against closed forms and a brute-force re-solve."""

import pytest
import torch

from prunelib.core.gptq import gptq
from prunelib.core.hessian import relative_error
from prunelib.core.quantize import QuantSpec, dequantize, expand_scales, quantize_codes, rtn
from prunelib.core.sparsegpt import sparsegpt
from prunelib.errors import PrunelibError


def correlated_hessian(cols, n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    # a few strong shared directions plus noise: inputs as correlated as an LLM's
    mix = torch.randn(cols, 8, generator=g, dtype=torch.float64) @ torch.randn(8, cols, generator=g, dtype=torch.float64)
    mix += 0.3 * torch.eye(cols, dtype=torch.float64)
    X = mix @ torch.randn(cols, n, generator=g, dtype=torch.float64)
    return 2 * X @ X.T / n


def naive_gptq(W, H, spec):
    """Fix columns left to right at the rounded current value, then re-solve the not yet fixed
    columns exactly: w_R = w0_R - H_RR^-1 H_RF (w_F - w0_F) (per-channel scales from W)."""
    W0, W = W.double(), W.double().clone()
    scales = rtn(W0, spec).scales.double()
    cols = W.shape[1]
    codes = torch.zeros_like(W, dtype=torch.int8)
    for i in range(cols):
        codes[:, i] = quantize_codes(W[:, i].float(), scales[:, 0].float(), spec)
        W[:, i] = codes[:, i].double() * scales[:, 0]
        F, R = slice(0, i + 1), slice(i + 1, cols)
        if i + 1 < cols:
            W[:, R] = W0[:, R] - (W[:, F] - W0[:, F]) @ H[F, R] @ torch.linalg.inv(H[R, R])
    return W, codes


@pytest.mark.parametrize("seed", range(3))
def test_gptq_equals_the_exact_sequential_re_solve(seed):
    torch.manual_seed(seed)
    W = torch.randn(6, 16, dtype=torch.float64)
    H = correlated_hessian(16, seed=seed)
    spec = QuantSpec(4, None)
    result = gptq(W, H, spec, percdamp=0.0, blocksize=4)  # blocks of 4: exercises the lazy updates
    expected, codes = naive_gptq(W, H, spec)
    assert (result.codes == codes).float().mean() > 0.99  # float32 vs float64: a tie may round apart
    same = (result.codes == codes).all(1)
    assert torch.allclose(result.weight[same].double(), expected[same], atol=1e-4)


def test_identity_hessian_gives_round_to_nearest():
    torch.manual_seed(0)
    W = torch.randn(8, 32)
    for spec in (QuantSpec(4, None), QuantSpec(4, 8), QuantSpec(8, 16)):
        plain = rtn(W, spec)
        for act_order in (False, True):
            result = gptq(W, torch.eye(32), spec, act_order=act_order, blocksize=16)
            assert torch.equal(result.codes, plain.codes) and torch.equal(result.scales, plain.scales)


def test_weight_is_codes_times_scales_and_codes_in_range():
    torch.manual_seed(1)
    W, H = torch.randn(12, 64), correlated_hessian(64).float()
    for spec in (QuantSpec(4, 16), QuantSpec(3, None)):
        for act_order in (False, True):
            result = gptq(W, H, spec, act_order=act_order, blocksize=32)
            assert torch.equal(result.weight, dequantize(result.codes, result.scales))
            assert result.codes.abs().max() <= spec.levels


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_round_to_nearest_on_correlated_inputs(act_order):
    gains = []
    for seed in range(4):
        torch.manual_seed(seed)
        W, H = torch.randn(32, 64), correlated_hessian(64, seed=seed).float()
        spec = QuantSpec(3, 32)
        error_gptq = relative_error(W, gptq(W, H, spec, act_order=act_order, blocksize=32).weight, H)
        error_rtn = relative_error(W, rtn(W, spec).weight, H)
        gains.append(error_rtn / error_gptq)
    assert min(gains) > 1.0


def test_a_fixed_mask_is_kept_and_compensated():
    torch.manual_seed(2)
    W, H = torch.randn(16, 64), correlated_hessian(64, seed=2).float()
    pruned = sparsegpt(W, H, sparsity=0.5)
    for act_order in (False, True):
        result = gptq(pruned.weight, H, "int4-g32", mask=pruned.mask, act_order=act_order, blocksize=32)
        assert torch.equal(result.weight == 0, ~pruned.mask | (result.codes == 0))
        assert torch.all(result.weight[~pruned.mask] == 0) and torch.all(result.codes[~pruned.mask] == 0)
    # compensation helps: measured against the pruned layer's output, which is what GPTQ
    # reconstructs, it beats rounding the kept weights to nearest
    error_gptq = relative_error(pruned.weight, gptq(pruned.weight, H, "int4-g32", mask=pruned.mask, blocksize=32).weight, H)
    error_rtn = relative_error(pruned.weight, rtn(pruned.weight, "int4-g32").weight, H)
    assert error_gptq < error_rtn


@pytest.mark.parametrize("nm", [None, "2:4"])
def test_sparsegpt_joint_mode_prunes_and_quantizes_in_one_pass(nm):
    from prunelib.core.masks import NM

    pattern = NM.parse(nm) if nm else None
    spec = QuantSpec(3, 32)
    joint_errors, two_step_errors = [], []
    for seed in range(4):
        torch.manual_seed(seed)
        W, H = torch.randn(16, 64), correlated_hessian(64, seed=seed).float()
        joint = sparsegpt(W, H, sparsity=0.5, nm=pattern, quantize=spec, blocksize=32)
        assert joint.scales.shape == (16, 2)
        codes = torch.round(joint.weight / expand_scales(joint.scales, 64))
        assert torch.equal(joint.weight, codes * expand_scales(joint.scales, 64))  # on the grid
        assert codes.abs().max() <= spec.levels and torch.all(joint.weight[~joint.mask] == 0)
        assert (~joint.mask).float().mean() == 0.5
        plain = sparsegpt(W, H, sparsity=0.5, nm=pattern, blocksize=32)
        assert plain.scales is None
        joint_errors.append(relative_error(W, joint.weight, H))
        two_step_errors.append(relative_error(W, rtn(plain.weight, spec).weight, H))
    # compensating the rounding in the same pass beats rounding SparseGPT's result afterwards
    assert sum(joint_errors) < sum(two_step_errors)


@pytest.mark.parametrize("group", [None, 32, 192])
def test_block_size_only_batches_the_updates(group):
    """Lazy batching is exact algebra: every block size that holds whole groups gives the same
    codes; the default picks one for any group size (192 does not divide the usual 128)."""
    torch.manual_seed(3)
    W, H = torch.randn(8, 384, dtype=torch.float64), correlated_hessian(384, seed=3)
    spec = QuantSpec(4, group)
    sizes = [size for size in (32, 64, 128, 192, 384) if group is None or size % group == 0]
    results = [gptq(W, H, spec, blocksize=size) for size in sizes] + [gptq(W, H, spec)]
    for other in results[1:]:
        assert (other.codes == results[0].codes).float().mean() > 0.999  # float32 inside: a tie may round apart
        assert torch.allclose(other.scales, results[0].scales, rtol=1e-4)
    if group == 192:
        with pytest.raises(PrunelibError, match="multiple of the group size"):
            gptq(W, H, spec, blocksize=128)
