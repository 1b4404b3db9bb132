import math

import pytest
import torch

from prunelib.core.masks import NM, nm_mask
from prunelib.errors import PrunelibError
from prunelib.storage import formats

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SPARSITIES = [0.0, 0.3, 0.5, 0.9, 1.0]
SHAPES = [(1, 1), (1, 7), (5, 3), (13, 37), (4, 256), (3, 257), (2, 600)]  # 256 / 257: uint8 / uint16 indices


def sparse_matrix(rows, cols, sparsity, dtype=torch.float32, seed=0):
    """Random matrix with about ``sparsity`` of its entries exactly zero (all of them at 1.0)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, cols, generator=g).to(dtype)
    weight[weight == 0] = 1  # no accidental zeros: the drop below decides nnz
    return weight.masked_fill(torch.rand(rows, cols, generator=g) < sparsity, 0)


def formula(item, weight):
    rows, cols = weight.shape
    options = {"nm": item.nm} if item.name == "nm" else {}
    return formats.formula_bytes(item.name, rows, cols, int((weight != 0).sum()), weight.element_size(), **options)


# --- bit packing against a per-bit Python reference ------------------------------------------


def reference_pack_bits(bits: list[bool]) -> list[int]:
    out = [0] * math.ceil(len(bits) / 8)
    for k, bit in enumerate(bits):
        out[k // 8] |= int(bit) << (k % 8)
    return out


def reference_pack_uints(values: list[int], bits: int) -> list[int]:
    stream = [(value >> b) & 1 for value in values for b in range(bits)]
    return reference_pack_bits([bool(s) for s in stream])


def test_pack_bits_brute_force():
    g = torch.Generator().manual_seed(0)
    for length in range(0, 41):
        bits = torch.rand(length, generator=g) < 0.5
        packed = formats.pack_bits(bits)
        assert packed.dtype == torch.uint8 and packed.tolist() == reference_pack_bits(bits.tolist())
        assert torch.equal(formats.unpack_bits(packed, length), bits)
    every_byte = torch.tensor([[(v >> b) & 1 for b in range(8)] for v in range(256)], dtype=torch.bool)
    assert formats.pack_bits(every_byte).tolist() == list(range(256))  # 2-D input is read row-major


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8, 12, 32])
def test_pack_uints_brute_force(bits):
    g = torch.Generator().manual_seed(bits)
    for count in (0, 1, 3, 8, 17):
        values = torch.randint(0, 2**bits, (count,), generator=g, dtype=torch.int64)
        packed = formats.pack_uints(values, bits)
        assert packed.numel() == math.ceil(count * bits / 8)
        assert packed.tolist() == reference_pack_uints(values.tolist(), bits)
        assert torch.equal(formats.unpack_uints(packed, bits, count), values)


def test_pack_uints_rejects_out_of_range_and_bad_input():
    with pytest.raises(PrunelibError, match="to pack in 2 bits"):
        formats.pack_uints(torch.tensor([0, 4]), 2)
    with pytest.raises(PrunelibError, match="to pack in 3 bits"):
        formats.pack_uints(torch.tensor([-1]), 3)
    with pytest.raises(PrunelibError, match="integer tensor"):
        formats.pack_uints(torch.tensor([1.0]), 2)
    with pytest.raises(PrunelibError, match="bits must be"):
        formats.pack_uints(torch.tensor([1]), 0)
    with pytest.raises(PrunelibError, match="bool tensor"):
        formats.pack_bits(torch.tensor([1, 0]))
    with pytest.raises(PrunelibError, match="cannot unpack"):
        formats.unpack_bits(torch.zeros(1, dtype=torch.uint8), 9)


# --- dtypes and closed forms ---------------------------------------------------------------


def test_index_and_pointer_dtypes_are_the_smallest_that_fit():
    assert formats.index_dtype(1) == torch.uint8 and formats.index_dtype(256) == torch.uint8
    assert formats.index_dtype(257) == torch.uint16 and formats.index_dtype(2**16) == torch.uint16
    assert formats.index_dtype(2**16 + 1) == torch.int32
    assert formats.pointer_dtype(2**31 - 1) == torch.int32 and formats.pointer_dtype(2**31) == torch.int64
    assert [formats.position_bits(m) for m in (2, 3, 4, 5, 8, 9, 16)] == [1, 2, 2, 3, 3, 4, 4]


def test_closed_forms_by_hand():
    # 4x300 float16 with 10 non-zeros: values 20 B, uint16 indices 20 B, 5 int32 pointers 20 B
    assert formats.csr_bytes(4, 300, 10, 2) == 60
    assert formats.bitmask_bytes(4, 300, 10, 2) == 20 + 150
    assert formats.bitmask_bytes(3, 3, 0, 4) == 2  # 9 mask bits need 2 bytes
    # 2:4 stores half the entries plus 2 bits per stored entry: 9 bits per weight in float16
    assert formats.nm_bytes(8, 64, 2, "2:4") * 8 / (8 * 64) == 9
    assert formats.nm_bytes(1, 8, 4, "3:8") == 3 * 4 + math.ceil(3 * 3 / 8)
    assert formats.dense_bytes(4, 300, 2) == 2400


# --- exact round trips and measured bytes == formula ------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["dense", "csr", "bitmask"])
def test_round_trip_exact_and_bytes_match_formula(name, dtype):
    for shape in SHAPES:
        for sparsity in SPARSITIES:
            weight = sparse_matrix(*shape, sparsity, dtype, seed=shape[0] * 1000 + shape[1] + int(10 * sparsity))
            item = formats.encode(weight, name)
            decoded = item.decode()
            assert decoded.dtype == dtype and torch.equal(decoded, weight), (shape, sparsity)
            assert item.nbytes == formula(item, weight), (shape, sparsity)
            if name != "dense":
                assert item.values.numel() == int((weight != 0).sum())


def test_zero_and_full_sparsity_extremes():
    full, empty = sparse_matrix(5, 9, 0.0), torch.zeros(5, 9)
    csr = formats.encode(full, "csr")
    assert csr.values.numel() == 45 and csr.row_pointers.tolist() == list(range(0, 46, 9))
    for name in ("csr", "bitmask"):
        item = formats.encode(empty, name)
        assert item.values.numel() == 0 and torch.equal(item.decode(), empty)
    assert formats.encode(empty, "csr").nbytes == 6 * 4  # only the row pointers
    assert formats.encode(empty, "bitmask").nbytes == math.ceil(45 / 8)


def test_csr_layout_by_hand():
    weight = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    csr = formats.encode(weight, "csr")
    assert csr.values.tolist() == [2.0, 3.0, 4.0]
    assert csr.col_indices.tolist() == [1, 0, 2] and csr.col_indices.dtype == torch.uint8
    assert csr.row_pointers.tolist() == [0, 1, 1, 3] and csr.row_pointers.dtype == torch.int32
    bitmask = formats.encode(weight, "bitmask")
    assert bitmask.mask.tolist() == [0b01000010, 0b00000001]  # entries 1, 6 | 8
    assert bitmask.values.tolist() == [2.0, 3.0, 4.0]


def test_negative_zero_counts_as_zero():
    weight = torch.tensor([[-0.0, 1.0, 0.0, -2.0]])
    for name in ("csr", "bitmask", "nm"):
        item = formats.encode(weight, name)
        assert torch.equal(item.decode(), weight)  # -0.0 == 0.0; the sign of a zero is not kept
    assert formats.encode(weight, "csr").values.tolist() == [1.0, -2.0]


# --- N:M ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4", "3:8", "1:2", "5:16"])
def test_nm_round_trip_on_nm_masks(pattern, dtype):
    nm = NM.parse(pattern)
    for rows, cols in ((1, nm.m), (7, 3 * nm.m), (16, 64 if nm.m <= 8 else 96)):
        weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(rows)).to(dtype)
        pruned = weight * nm_mask(weight.abs().float(), nm)
        item = formats.encode(pruned, "nm", nm=pattern)
        assert item.values.shape == (rows, cols // nm.m * nm.n) and item.values.dtype == dtype
        assert item.decode().dtype == dtype and torch.equal(item.decode(), pruned)
        assert item.nbytes == formats.nm_bytes(rows, cols, pruned.element_size(), pattern) == formula(item, pruned)
        bits = formats.position_bits(nm.m)
        positions = formats.unpack_uints(item.positions, bits, item.values.numel()).view(rows, -1, nm.n)
        assert torch.all(positions.diff(dim=-1) > 0)  # distinct and increasing inside each group
        # every stored value is the weight at its position
        groups = pruned.reshape(rows, -1, nm.m)
        assert torch.equal(groups.gather(-1, positions), item.values.reshape(rows, -1, nm.n))


def test_nm_groups_with_fewer_than_n_non_zeros_store_zeros():
    weight = torch.tensor([[0.0, 5.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0], [0.0] * 8])
    item = formats.encode(weight, "nm", nm="2:4")
    assert item.values.tolist() == [[0.0, 5.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]]
    # positions [0, 1], [0, 3], [0, 1], [0, 1] in 2 bits, four to a byte, lowest first
    assert item.positions.tolist() == [0 | 1 << 2 | 0 << 4 | 3 << 6, 0 | 1 << 2 | 0 << 4 | 1 << 6]
    assert torch.equal(item.decode(), weight)
    for sparsity in SPARSITIES:  # sparser than N:M is still N:M
        sparse = sparse_matrix(6, 24, sparsity) * nm_mask(torch.rand(6, 24), NM(2, 4))
        assert torch.equal(formats.encode(sparse, "nm", nm="2:4").decode(), sparse)


def test_nm_violations_raise():
    weight = torch.ones(2, 8)
    weight[1, :] = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])
    weight[0, :] = torch.tensor([1.0, 1, 0, 0, 0, 0, 1, 1])
    with pytest.raises(PrunelibError, match=r"not 2:4 sparse: row 1, columns 4\.\.7 hold 3 non-zeros"):
        formats.encode(weight, "nm", nm="2:4")
    with pytest.raises(PrunelibError, match="not divisible by M=4"):
        formats.encode(torch.zeros(2, 6), "nm", nm="2:4")
    with pytest.raises(PrunelibError, match="M <= 16"):
        formats.encode(torch.zeros(2, 32), "nm", nm="2:32")
    with pytest.raises(PrunelibError, match="1 <= N < M"):
        formats.encode(torch.zeros(2, 8), "nm", nm="4:4")


def test_bad_inputs_raise():
    with pytest.raises(PrunelibError, match="unknown storage format 'coo'"):
        formats.encode(torch.zeros(2, 2), "coo")
    with pytest.raises(PrunelibError, match="2-D tensor"):
        formats.encode(torch.zeros(2, 2, 2), "csr")
    good = formats.encode(sparse_matrix(3, 5, 0.5), "csr")
    with pytest.raises(PrunelibError, match="'col_indices' should be"):
        formats.CSR(good.shape, good.values, good.col_indices.to(torch.int64), good.row_pointers)
    with pytest.raises(PrunelibError, match="missing \\['row_pointers'\\]"):
        formats.CSR.from_state_dict({"values": good.values, "col_indices": good.col_indices}, good.config())


# --- break-even sparsity of CSR --------------------------------------------------------------


@pytest.mark.parametrize("value_bytes", [1, 2, 4])
def test_csr_break_even_matches_brute_force(value_bytes):
    for rows, cols in [(1, 1), (1, 8), (3, 5), (4, 16), (10, 3), (8, 256), (5, 300), (40, 1)]:
        dense = formats.dense_bytes(rows, cols, value_bytes)
        smaller = [nnz for nnz in range(rows * cols + 1) if formats.csr_bytes(rows, cols, nnz, value_bytes) < dense]
        assert smaller == list(range(len(smaller)))  # a prefix: CSR grows with nnz
        assert formats.csr_break_even_nnz(rows, cols, value_bytes) == (smaller[-1] if smaller else -1)
        sparsity = formats.csr_break_even_sparsity(rows, cols, value_bytes)
        assert sparsity == (None if not smaller else 1 - smaller[-1] / (rows * cols))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_csr_break_even_on_encoded_matrices(dtype):
    rows, cols = 6, 300
    value_bytes = torch.empty((), dtype=dtype).element_size()
    last, dense = formats.csr_break_even_nnz(rows, cols, value_bytes), formats.dense_bytes(rows, cols, value_bytes)
    order = torch.randperm(rows * cols, generator=torch.Generator().manual_seed(0))
    for nnz, smaller in ((last, True), (last + 1, False)):
        weight = torch.zeros(rows * cols, dtype=dtype)
        weight[order[:nnz]] = 1.5
        assert (formats.encode(weight.view(rows, cols), "csr").nbytes < dense) == smaller


def test_csr_break_even_tends_to_index_share():
    # large matrices: nnz * (v + i) < numel * v  ->  sparsity > i / (v + i), up to the pointers
    for rows, cols, value_bytes in [(1536, 576, 2), (576, 1536, 4), (4096, 200, 2)]:
        index_bytes = formats.dtype_bytes(formats.index_dtype(cols))
        limit = index_bytes / (value_bytes + index_bytes)
        slack = (rows + 1) * 4 / (rows * cols * (value_bytes + index_bytes)) + 1 / (rows * cols)
        assert limit <= formats.csr_break_even_sparsity(rows, cols, value_bytes) <= limit + slack


# --- state dicts, files, reports -------------------------------------------------------------


def encoded_examples(dtype=torch.float16):
    weight = sparse_matrix(12, 40, 0.6, dtype, seed=3)
    nm = weight * nm_mask(weight.abs().float(), NM(2, 4))
    return {
        "0.self_attn.q_proj": formats.encode(weight, "csr"),
        "0.mlp.up_proj": formats.encode(weight, "bitmask"),
        "dense": formats.encode(weight, "dense"),
        "0.mlp.down_proj": formats.encode(nm, "nm", nm="2:4"),
        "one_row": formats.encode(torch.tensor([[0, 0, 0, 0, 0, -3.5, 0, 0]], dtype=dtype), "nm", nm="1:8"),
    }


def test_state_dict_keeps_values_separate_from_metadata():
    for item in encoded_examples().values():
        state = item.state_dict()
        assert list(state)[0] == "values" and state["values"].dtype == torch.float16
        assert all(not t.dtype.is_floating_point for key, t in state.items() if key != "values")
        assert item.nbytes == sum(t.numel() * t.element_size() for t in state.values())
        again = type(item).from_state_dict(state, item.config())
        assert torch.equal(again.decode(), item.decode())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_save_load_round_trip_on_disk(tmp_path, dtype):
    from safetensors import safe_open

    encoded = encoded_examples(dtype)
    path = tmp_path / "weights.safetensors"
    formats.save(path, encoded)
    loaded = formats.load(path)
    assert list(loaded) == list(encoded)
    for name, item in encoded.items():
        back = loaded[name]
        assert type(back) is type(item) and back.shape == item.shape and back.config() == item.config()
        for key, tensor in item.state_dict().items():
            assert back.state_dict()[key].dtype == tensor.dtype and torch.equal(back.state_dict()[key], tensor)
        assert back.decode().dtype == dtype and torch.equal(back.decode(), item.decode())
    with safe_open(str(path), "pt") as file:
        import json

        layout = json.loads(file.metadata()[formats.METADATA_KEY])
    assert layout["0.mlp.down_proj"] == {"format": "nm", "shape": [12, 40], "nm": "2:4"}
    assert layout["0.self_attn.q_proj"]["format"] == "csr"


def test_load_rejects_files_without_layout(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(PrunelibError, match="no 'prunelib.formats' metadata"):
        formats.load(tmp_path / "plain.safetensors")


def test_storage_report_sums_over_matrices():
    weights = {"a": sparse_matrix(8, 16, 0.5) * nm_mask(torch.rand(8, 16), NM(2, 4)), "b": torch.zeros(4, 8),
               "c": sparse_matrix(3, 300, 0.0) * nm_mask(torch.rand(3, 300), NM(2, 4))}
    report = formats.storage_report(weights, ["dense", "csr", "bitmask", "nm"], torch.float16, nm="2:4")
    assert [row["format"] for row in report] == ["dense", "csr", "bitmask", "nm"]
    numel = 8 * 16 + 4 * 8 + 3 * 300
    for row in report:
        options = {"nm": "2:4"} if row["format"] == "nm" else {}
        expected = sum(formats.encode(w.half(), row["format"], **options).nbytes for w in weights.values())
        assert row["bytes"] == expected == row["formula_bytes"]
        assert row["numel"] == numel and row["dense_bytes"] == 2 * numel
        assert row["nnz"] == sum(int((w.half() != 0).sum()) for w in weights.values())
        assert row["bits_per_weight"] == 8 * row["bytes"] / numel
        assert row["compression"] == 2 * numel / row["bytes"]
    assert report[0]["bits_per_weight"] == 16 and report[0]["compression"] == 1
    assert report[3]["nm"] == "2:4"
    # 2:4 in float16 is 9 bits per weight, plus at most one byte of padded positions per matrix
    assert 9 <= report[3]["bits_per_weight"] < 9 + 8 * len(weights) / numel
    with pytest.raises(PrunelibError, match="not 2:4 sparse"):
        formats.storage_report({"x": torch.ones(2, 8)}, ["nm"])
