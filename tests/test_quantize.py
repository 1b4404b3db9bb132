"""Round-to-nearest symmetric quantization: the grid, the nearest point, and exact zeros."""

import pytest
import torch

from prunelib.core.quantize import QuantSpec, dequantize, expand_scales, group_scales, quantize_codes, rtn
from prunelib.errors import PrunelibError


@pytest.mark.parametrize("text, bits, group", [("int4", 4, None), ("int8", 8, None), ("INT4-g128", 4, 128),
                                               ("int3-g32", 3, 32)])
def test_parse(text, bits, group):
    spec = QuantSpec.parse(text)
    assert (spec.bits, spec.group_size) == (bits, group) and QuantSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("bad", ["int", "fp8", "int4-128", "int1", "int16", "int4-g0"])
def test_parse_rejects(bad):
    with pytest.raises(PrunelibError):
        QuantSpec.parse(bad)


def test_levels_and_scale_bits():
    assert QuantSpec(4).levels == 7 and QuantSpec(8).levels == 127
    assert QuantSpec(4, 64).scale_bits(576) == pytest.approx(16 * 9 / 576)
    assert QuantSpec(8, None).scale_bits(576) == pytest.approx(16 / 576)
    with pytest.raises(PrunelibError, match="not divisible"):
        QuantSpec(4, 128).groups(576)


@pytest.mark.parametrize("spec", [QuantSpec(4, None), QuantSpec(4, 16), QuantSpec(8, 32), QuantSpec(3, 8)])
def test_rtn_is_the_nearest_grid_point_and_keeps_zeros(spec):
    torch.manual_seed(0)
    W = torch.randn(6, 64, dtype=torch.float64)
    W[torch.rand_like(W) < 0.5] = 0.0  # pruned
    result = rtn(W, spec)
    s = expand_scales(result.scales, 64).double()
    assert result.codes.dtype == torch.int8 and result.codes.abs().max() <= spec.levels
    assert torch.equal(result.weight == 0, (W == 0) | (result.codes == 0))
    assert torch.all(result.weight[W == 0] == 0)  # a pruned weight stays exactly zero
    # brute force: the dequantized value is the closest of all 2Q+1 grid points
    grid = torch.arange(-spec.levels, spec.levels + 1, dtype=torch.float64)
    distances = (W[..., None] - grid * s[..., None]).abs()
    assert torch.allclose((W - result.weight).abs(), distances.min(-1).values, atol=1e-6)  # float32 scales
    assert torch.all((W - result.weight).abs() <= s / 2 + 1e-6)
    # the largest |w| of every group is on the grid's end point: no clipping
    rows, cols = W.shape
    groups = W.abs().reshape(rows, spec.groups(cols), -1)
    codes = result.codes.reshape(rows, spec.groups(cols), -1).abs()
    has = groups.amax(-1) > 0
    assert torch.all(codes.amax(-1)[has] == spec.levels)


def test_all_zero_group_and_dtype():
    W = torch.zeros(2, 8, dtype=torch.float16)
    W[1, 4:] = torch.tensor([3.5, -7.0, 2.5, 0.0], dtype=torch.float16)  # scale 7 / 7 = 1
    result = rtn(W, QuantSpec(4, 4))
    assert result.weight.dtype == torch.float16 and torch.all(result.scales[0] == 1)
    assert torch.equal(result.codes[0], torch.zeros(8, dtype=torch.int8))
    assert result.codes[1, 4:].tolist() == [4, -7, 2, 0]  # ties round half to even


def test_column_codes_match_matrix_codes():
    torch.manual_seed(1)
    W = torch.randn(5, 12)
    spec = QuantSpec(4, None)
    scales = group_scales(W, spec)
    whole = quantize_codes(W, scales, spec)
    assert all(torch.equal(quantize_codes(W[:, j], scales[:, 0], spec), whole[:, j]) for j in range(12))
    assert torch.equal(dequantize(whole, scales), whole.float() * scales)
