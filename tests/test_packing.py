"""Packed quantized sparse matrices: exact round trips and byte counts equal to the closed form."""

import pytest
import torch

from prunelib.core.masks import NM, nm_mask
from prunelib.core.quantize import QuantSpec, rtn
from prunelib.errors import PrunelibError
from prunelib.storage import formats, packing
from prunelib.storage.packing import QuantizedMatrix, packed_bytes

LAYOUTS = [("dense", {}), ("bitmask", {}), ("csr", {}), ("nm", {"nm": "2:4"})]


def pruned_quantized(spec, rows=12, cols=64, seed=0, pattern="2:4"):
    torch.manual_seed(seed)
    W = torch.randn(rows, cols)
    W = W * nm_mask(W.abs(), NM.parse(pattern))  # 2:4 so that every layout applies
    return W, rtn(W, spec)


@pytest.mark.parametrize("layout, options", LAYOUTS)
@pytest.mark.parametrize("spec", [QuantSpec(4, 16), QuantSpec(8, None), QuantSpec(3, 32)])
def test_round_trip_is_exact_and_bytes_match_the_formula(layout, options, spec):
    W, q = pruned_quantized(spec)
    packed = QuantizedMatrix.encode(q.codes, q.scales, spec.bits, layout, **options)
    assert torch.equal(packed.codes(), q.codes)
    assert torch.equal(packed.decode(), q.weight)  # the file's model is the in-memory model
    nnz = int(torch.count_nonzero(q.codes))
    assert packed.nbytes == packed_bytes(12, 64, nnz, spec.bits, spec.groups(64), layout, **options)


def test_int4_packs_two_codes_per_byte():
    spec = QuantSpec(4, 64)
    W, q = pruned_quantized(spec, rows=4, cols=64)
    dense = QuantizedMatrix.encode(q.codes, q.scales, 4, "dense")
    assert dense.packed.numel() == 4 * 64 // 2 and dense.nbytes == 4 * 64 // 2 + 4 * 1 * 2
    nm = QuantizedMatrix.encode(q.codes, q.scales, 4, "nm", nm="2:4")
    # 2:4 + INT4: half the codes at 4 bits, a 2-bit position each, one float16 scale per 64
    assert 8 * nm.nbytes / W.numel() == pytest.approx(0.5 * 4 + 0.5 * 2 + 16 / 64)


def test_codes_out_of_range_and_unrepresentable_scales_are_refused():
    spec = QuantSpec(4, None)
    W, q = pruned_quantized(spec)
    with pytest.raises(PrunelibError, match="more than 3"):
        QuantizedMatrix.encode(q.codes, q.scales, 3)
    with pytest.raises(PrunelibError, match="float16"):
        QuantizedMatrix.encode(q.codes, q.scales + 1e-7, 4)


def test_file_round_trip_with_plain_layouts_and_extra_tensors(tmp_path):
    spec = QuantSpec(4, 16)
    W, q = pruned_quantized(spec)
    matrices = {
        "layer.weight": QuantizedMatrix.encode(q.codes, q.scales, 4, "nm", nm="2:4"),
        "layer.weight.fp16": formats.encode(W.half(), "bitmask"),  # a name that extends another
    }
    extra = {"layer.weight.bias": torch.arange(3.0), "norm": torch.ones(5)}
    path = tmp_path / "model.safetensors"
    packing.save(path, matrices, extra, metadata={"note": "test"})
    loaded, tensors, metadata = packing.load(path)
    assert torch.equal(loaded["layer.weight"].decode(), q.weight)
    assert torch.equal(loaded["layer.weight.fp16"].decode(), W.half())
    assert set(tensors) == set(extra) and all(torch.equal(tensors[k], v) for k, v in extra.items())
    assert metadata == {"note": "test"}
    payload = sum(m.nbytes for m in matrices.values()) + sum(t.numel() * t.element_size() for t in extra.values())
    assert payload < path.stat().st_size < payload + 4096  # the header is all that is added
