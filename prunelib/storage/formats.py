"""Sparse storage formats for one weight matrix ``W`` ``(rows, cols)``, with exact byte counts.

Four formats, each a small dataclass of tensors that decodes back to exactly the matrix it
encoded (``torch.equal``, same dtype):

========= ========================================================= ===========================================
format    stores                                                    bytes
========= ========================================================= ===========================================
dense     every entry                                               ``rows*cols*v``
csr       non-zeros, their column indices, row pointers             ``nnz*(v + i) + (rows+1)*p``
bitmask   non-zeros (row-major), keep mask packed 8 per byte        ``nnz*v + ceil(rows*cols/8)``
nm        exactly N values per group of M inputs, their positions   ``S*v + ceil(S*b/8)``, ``S = rows*(cols/M)*N``
========= ========================================================= ===========================================

with ``v`` the bytes of one value (2 for float16), ``i`` the bytes of a column index
(:func:`index_dtype`), ``p`` those of a row pointer (:func:`pointer_dtype`) and
``b = ceil(log2 M)`` the bits of one N:M position. ``nnz`` counts entries that are not equal
to zero, so ``-0.0`` counts as a zero: it is not stored by csr or bitmask and decodes as
``+0.0`` (``torch.equal`` does not tell the two apart). NaN is not zero and is stored.

The ``nbytes`` of an encoded matrix is measured from its tensors (``numel * element_size``);
the ``*_bytes`` functions are the closed forms above, pure arithmetic, and the tests check
that the two agree. Values and sparsity metadata are separate tensors in
:meth:`SparseFormat.state_dict` (``"values"`` plus integer metadata) so that a quantizer can
replace the values and keep the metadata. :func:`save` and :func:`load` write and read many
encoded matrices with safetensors.

Bit packing is little-endian throughout: bit ``k`` of a stream lands in byte ``k // 8`` at bit
``k % 8``, and a ``b``-bit number occupies stream bits ``[j*b, (j+1)*b)``, lowest bit first (so
the 2-bit positions of 2:4 pack four to a byte, the first one in the lowest two bits, as in
NVIDIA's metadata nibbles; the interleaving of cuSPARSELt's hardware layout is not reproduced).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..core.masks import NM, check_nm_columns
from ..errors import PrunelibError

#: torch.uint16 exists from torch 2.3; older releases store column indices up to 65536 as int32.
_UINT16 = getattr(torch, "uint16", None)
#: largest M of an N:M pattern: positions then fit in 4 bits.
MAX_M = 16
#: safetensors metadata key holding the layout (format and options of every matrix).
METADATA_KEY = "prunelib.formats"  # the file format's name (stable), not a module path


# --- pure arithmetic: dtypes and closed-form byte counts ------------------------------------


def index_dtype(cols: int) -> torch.dtype:
    """Smallest dtype holding a column index ``0 .. cols-1``: uint8 up to 256 columns, uint16 up
    to 65536 (int32 where torch has no uint16), int32 up to ``2**31``.

    int32 rather than uint32 above 65536: torch's uint32 supports few operations, and no
    weight matrix has ``2**31`` columns.
    """
    if cols <= 2**8:
        return torch.uint8
    if cols <= 2**16 and _UINT16 is not None:
        return _UINT16
    if cols <= 2**31:
        return torch.int32
    raise PrunelibError(f"a matrix with {cols} columns is too wide for int32 column indices")


def pointer_dtype(nnz: int) -> torch.dtype:
    """Row pointers count stored entries ``0 .. nnz``: int32 when ``nnz < 2**31``, else int64."""
    return torch.int32 if nnz < 2**31 else torch.int64


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def position_bits(m: int) -> int:
    """Bits of one position inside a group of ``m``: ``ceil(log2 m)`` (2 for 2:4, 3 for 4:8)."""
    return max(1, (m - 1).bit_length())


def dense_bytes(rows: int, cols: int, value_bytes: int) -> int:
    """``rows * cols * value_bytes``."""
    return rows * cols * value_bytes


def csr_bytes(rows: int, cols: int, nnz: int, value_bytes: int) -> int:
    """``nnz * (value_bytes + index_bytes) + (rows + 1) * pointer_bytes``, index and pointer bytes
    from :func:`index_dtype` ``(cols)`` and :func:`pointer_dtype` ``(nnz)``."""
    index_bytes, pointer_bytes = dtype_bytes(index_dtype(cols)), dtype_bytes(pointer_dtype(nnz))
    return nnz * (value_bytes + index_bytes) + (rows + 1) * pointer_bytes


def bitmask_bytes(rows: int, cols: int, nnz: int, value_bytes: int) -> int:
    """``nnz * value_bytes + ceil(rows * cols / 8)``."""
    return nnz * value_bytes + -(-rows * cols // 8)


def nm_bytes(rows: int, cols: int, value_bytes: int, nm: NM | str) -> int:
    """``S * value_bytes + ceil(S * ceil(log2 M) / 8)`` with ``S = rows * (cols / M) * N`` stored
    values; independent of the number of non-zeros (groups with fewer than N store zeros)."""
    pattern = NM.parse(nm)
    stored = rows * (cols // pattern.m) * pattern.n
    return stored * value_bytes + -(-stored * position_bits(pattern.m) // 8)


def csr_break_even_nnz(rows: int, cols: int, value_bytes: int) -> int:
    """Largest ``nnz`` at which CSR is strictly smaller than dense, or -1 if it never is.

    Solves ``nnz * (v + i) + (rows + 1) * p < rows * cols * v`` for the largest integer ``nnz``:
    ``floor((rows*cols*v - (rows+1)*p - 1) / (v + i))``, capped at ``rows * cols``, with ``p``
    the pointer bytes that apply to that ``nnz`` (4, or 8 from ``2**31`` on).
    """
    numel, index_bytes = rows * cols, dtype_bytes(index_dtype(cols))
    best = -1
    for pointer_bytes, low, high in ((4, 0, 2**31 - 1), (8, 2**31, numel)):
        room = dense_bytes(rows, cols, value_bytes) - (rows + 1) * pointer_bytes
        largest = min((room - 1) // (value_bytes + index_bytes), high, numel)
        if largest >= low:
            best = max(best, largest)
    return best


def csr_break_even_sparsity(rows: int, cols: int, value_bytes: int) -> float | None:
    """Smallest fraction of zeros at which CSR is smaller than dense: ``1 - nnz* / (rows*cols)``
    with ``nnz*`` from :func:`csr_break_even_nnz`; None if CSR is never smaller.

    For large matrices it tends to ``i / (v + i)``: 1/2 for float16 values with uint16 indices.
    """
    nnz = csr_break_even_nnz(rows, cols, value_bytes)
    return None if nnz < 0 else 1.0 - nnz / (rows * cols)


# --- pure functions: bit packing ------------------------------------------------------------


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor (any shape, read row-major) 8 per byte: uint8 ``(ceil(numel/8),)``.

    Bit ``k`` goes to byte ``k // 8``, bit ``k % 8`` (least significant first); the last byte
    is padded with zeros.
    """
    if bits.dtype != torch.bool:
        raise PrunelibError(f"pack_bits needs a bool tensor, got {bits.dtype}")
    flat = bits.reshape(-1)
    pad = -flat.numel() % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    shifts = torch.arange(8, dtype=torch.int32, device=bits.device)
    return (flat.view(-1, 8).to(torch.int32) << shifts).sum(-1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` bits as a bool tensor ``(count,)``."""
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise PrunelibError(f"unpack_bits needs a 1-D uint8 tensor, got {packed.dtype} of shape {tuple(packed.shape)}")
    if not 0 <= count <= 8 * packed.numel():
        raise PrunelibError(f"cannot unpack {count} bits from {packed.numel()} bytes")
    shifts = torch.arange(8, dtype=torch.int32, device=packed.device)
    return ((packed.to(torch.int32)[:, None] >> shifts) & 1).bool().reshape(-1)[:count]


def _check_bits(bits: int) -> None:
    if not (isinstance(bits, int) and 1 <= bits <= 32):
        raise PrunelibError(f"bits must be an integer from 1 to 32, got {bits}")


def pack_uints(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned integers ``0 <= x < 2**bits`` (any integer tensor, read row-major) into a
    uint8 stream of ``ceil(numel * bits / 8)`` bytes, value ``j`` in stream bits
    ``[j*bits, (j+1)*bits)``, lowest bit first."""
    _check_bits(bits)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise PrunelibError(f"pack_uints needs an integer tensor, got {values.dtype}")
    flat = values.reshape(-1).to(torch.int64)
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2**bits):
        low, high = int(flat.min()), int(flat.max())
        raise PrunelibError(f"values must lie in [0, {2**bits}) to pack in {bits} bits, got [{low}, {high}]")
    shifts = torch.arange(bits, dtype=torch.int64, device=values.device)
    return pack_bits(((flat[:, None] >> shifts) & 1).bool())


def unpack_uints(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_uints`: the first ``count`` numbers as int64 ``(count,)``."""
    _check_bits(bits)
    stream = unpack_bits(packed, count * bits).view(count, bits).to(torch.int64)
    shifts = torch.arange(bits, dtype=torch.int64, device=packed.device)
    return (stream << shifts).sum(-1)


# --- the formats ----------------------------------------------------------------------------


def _check_matrix(weight: torch.Tensor) -> tuple[int, int]:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise PrunelibError(f"a weight matrix must be a 2-D tensor (rows, cols), got {shape}")
    return tuple(weight.shape)


def _check_tensor(name: str, tensor: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> None:
    if tuple(tensor.shape) != shape or (dtype is not None and tensor.dtype != dtype):
        expected = f"{shape} {dtype or ''}".strip()
        raise PrunelibError(f"'{name}' should be {expected}, got {tuple(tensor.shape)} {tensor.dtype}")


@dataclass(frozen=True, eq=False)
class SparseFormat:
    """Base of the formats: a matrix of ``shape`` ``(rows, cols)`` stored as the tensors named in
    ``FIELDS`` (``"values"`` first, then integer metadata)."""

    name: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]

    shape: tuple[int, int]

    @classmethod
    def encode(cls, weight: torch.Tensor, **options) -> "SparseFormat":
        raise NotImplementedError

    def decode(self) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def formula_bytes(rows: int, cols: int, nnz: int, value_bytes: int, **options) -> int:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors, measured: ``sum(numel * element_size)``."""
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {field: getattr(self, field) for field in self.FIELDS}

    def config(self) -> dict:
        """What besides the tensors is needed to decode (JSON-serialisable)."""
        return {"shape": list(self.shape)}

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor], config: Mapping) -> "SparseFormat":
        missing = [field for field in cls.FIELDS if field not in tensors]
        if missing:
            raise PrunelibError(f"{cls.name} needs the tensors {list(cls.FIELDS)}; missing {missing}")
        options = {key: value for key, value in config.items() if key not in ("shape", "format")}
        return cls(tuple(int(n) for n in config["shape"]), *(tensors[field] for field in cls.FIELDS), **options)


@dataclass(frozen=True, eq=False)
class Dense(SparseFormat):
    """Every entry: ``values`` ``(rows, cols)``. Bytes: ``rows * cols * value_bytes``."""

    name: ClassVar[str] = "dense"
    FIELDS: ClassVar[tuple[str, ...]] = ("values",)

    values: torch.Tensor

    def __post_init__(self):
        _check_tensor("values", self.values, tuple(self.shape))

    @classmethod
    def encode(cls, weight: torch.Tensor) -> "Dense":
        rows, cols = _check_matrix(weight)
        return cls((rows, cols), weight.detach().clone().contiguous())

    def decode(self) -> torch.Tensor:
        return self.values.clone()

    @staticmethod
    def formula_bytes(rows: int, cols: int, nnz: int, value_bytes: int) -> int:
        return dense_bytes(rows, cols, value_bytes)


@dataclass(frozen=True, eq=False)
class CSR(SparseFormat):
    """Compressed sparse rows.

    ``values`` ``(nnz,)`` in the weight's dtype, row by row; ``col_indices`` ``(nnz,)`` in
    :func:`index_dtype` ``(cols)``; ``row_pointers`` ``(rows + 1,)`` in :func:`pointer_dtype`
    ``(nnz)``, row ``r`` holding entries ``row_pointers[r] .. row_pointers[r+1] - 1``.
    Bytes: ``nnz * (value_bytes + index_bytes) + (rows + 1) * pointer_bytes``.
    """

    name: ClassVar[str] = "csr"
    FIELDS: ClassVar[tuple[str, ...]] = ("values", "col_indices", "row_pointers")

    values: torch.Tensor
    col_indices: torch.Tensor
    row_pointers: torch.Tensor

    def __post_init__(self):
        rows, cols = self.shape
        nnz = self.values.numel()
        _check_tensor("values", self.values, (nnz,))
        _check_tensor("col_indices", self.col_indices, (nnz,), index_dtype(cols))
        _check_tensor("row_pointers", self.row_pointers, (rows + 1,), pointer_dtype(nnz))

    @classmethod
    def encode(cls, weight: torch.Tensor) -> "CSR":
        rows, cols = _check_matrix(weight)
        keep = weight != 0
        values = weight.detach()[keep]  # boolean indexing reads row-major
        col_indices = keep.nonzero()[:, 1].to(index_dtype(cols))
        row_pointers = torch.zeros(rows + 1, dtype=torch.int64, device=weight.device)
        row_pointers[1:] = keep.sum(1).cumsum(0)
        return cls((rows, cols), values, col_indices, row_pointers.to(pointer_dtype(values.numel())))

    def decode(self) -> torch.Tensor:
        rows, cols = self.shape
        out = torch.zeros(rows, cols, dtype=self.values.dtype, device=self.values.device)
        counts = self.row_pointers.to(torch.int64).diff()
        row_indices = torch.repeat_interleave(torch.arange(rows, device=out.device), counts)
        out[row_indices, self.col_indices.to(torch.int64)] = self.values
        return out

    @staticmethod
    def formula_bytes(rows: int, cols: int, nnz: int, value_bytes: int) -> int:
        return csr_bytes(rows, cols, nnz, value_bytes)


@dataclass(frozen=True, eq=False)
class Bitmask(SparseFormat):
    """Non-zero ``values`` ``(nnz,)`` in row-major order and the keep ``mask`` of all
    ``rows * cols`` entries packed 8 per byte (:func:`pack_bits`), uint8 ``(ceil(rows*cols/8),)``.
    Bytes: ``nnz * value_bytes + ceil(rows * cols / 8)``.
    """

    name: ClassVar[str] = "bitmask"
    FIELDS: ClassVar[tuple[str, ...]] = ("values", "mask")

    values: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        rows, cols = self.shape
        _check_tensor("values", self.values, (self.values.numel(),))
        _check_tensor("mask", self.mask, (-(-rows * cols // 8),), torch.uint8)

    @classmethod
    def encode(cls, weight: torch.Tensor) -> "Bitmask":
        rows, cols = _check_matrix(weight)
        keep = weight != 0
        return cls((rows, cols), weight.detach()[keep], pack_bits(keep))

    def decode(self) -> torch.Tensor:
        rows, cols = self.shape
        keep = unpack_bits(self.mask, rows * cols).view(rows, cols)
        if int(keep.sum()) != self.values.numel():
            raise PrunelibError(f"bitmask keeps {int(keep.sum())} entries but {self.values.numel()} values are stored")
        out = torch.zeros(rows, cols, dtype=self.values.dtype, device=self.values.device)
        out[keep] = self.values
        return out

    @staticmethod
    def formula_bytes(rows: int, cols: int, nnz: int, value_bytes: int) -> int:
        return bitmask_bytes(rows, cols, nnz, value_bytes)


@dataclass(frozen=True, eq=False)
class NMCompressed(SparseFormat):
    """N:M compressed: for every group of M consecutive inputs of a row, exactly N values.

    ``values`` ``(rows, cols / M * N)`` in the weight's dtype; ``positions``: the place
    ``0 .. M-1`` of each value inside its group, ``ceil(log2 M)`` bits each, packed with
    :func:`pack_uints` in the order of ``values``, uint8 ``(ceil(rows * cols / M * N * bits / 8),)``.
    Positions inside a group are distinct and increasing. A group with fewer than N non-zeros
    is filled with its first zero entries, stored as values, so the layout never changes
    (as in NVIDIA's compressed 2:4 form). Bytes, with ``S = rows * (cols / M) * N``:
    ``S * value_bytes + ceil(S * ceil(log2 M) / 8)`` (2:4 in float16: 9 bits per weight).
    """

    name: ClassVar[str] = "nm"
    FIELDS: ClassVar[tuple[str, ...]] = ("values", "positions")

    values: torch.Tensor
    positions: torch.Tensor
    nm: str = "2:4"

    def __post_init__(self):
        pattern = _check_pattern(self.nm)
        rows, cols = self.shape
        check_nm_columns(pattern, cols, "the matrix")
        stored = rows * (cols // pattern.m) * pattern.n
        _check_tensor("values", self.values, (rows, cols // pattern.m * pattern.n))
        _check_tensor("positions", self.positions, (-(-stored * position_bits(pattern.m) // 8),), torch.uint8)

    @property
    def pattern(self) -> NM:
        return NM.parse(self.nm)

    @classmethod
    def encode(cls, weight: torch.Tensor, nm: NM | str = "2:4") -> "NMCompressed":
        rows, cols = _check_matrix(weight)
        pattern = _check_pattern(nm)
        n, m = pattern
        check_nm_columns(pattern, cols, f"the {rows}x{cols} matrix")
        groups = weight.detach().reshape(rows, cols // m, m)
        nonzero = groups != 0
        counts = nonzero.sum(-1)
        if bool((counts > n).any()):
            row, group = (int(i) for i in (counts > n).nonzero()[0])
            raise PrunelibError(
                f"the matrix is not {pattern} sparse: row {row}, columns {group * m}..{group * m + m - 1} "
                f"hold {int(counts[row, group])} non-zeros, more than N={n}"
            )
        # non-zeros first, then the group's first zeros as filler; then back in column order
        chosen = torch.argsort((~nonzero).to(torch.uint8), dim=-1, stable=True)[..., :n]
        positions = chosen.sort(-1).values
        values = groups.gather(-1, positions).reshape(rows, -1)
        return cls((rows, cols), values, pack_uints(positions, position_bits(m)), str(pattern))

    def decode(self) -> torch.Tensor:
        rows, cols = self.shape
        n, m = self.pattern
        count = rows * (cols // m) * n
        positions = unpack_uints(self.positions, position_bits(m), count).view(rows, cols // m, n)
        if count and int(positions.max()) >= m:
            raise PrunelibError(f"stored positions reach {int(positions.max())}, outside groups of M={m}")
        out = torch.zeros(rows, cols // m, m, dtype=self.values.dtype, device=self.values.device)
        out.scatter_(-1, positions.to(out.device), self.values.reshape(rows, cols // m, n))
        return out.view(rows, cols)

    def config(self) -> dict:
        return {"shape": list(self.shape), "nm": self.nm}

    @staticmethod
    def formula_bytes(rows: int, cols: int, nnz: int, value_bytes: int, nm: NM | str = "2:4") -> int:
        return nm_bytes(rows, cols, value_bytes, nm)


def _check_pattern(nm: NM | str) -> NM:
    pattern = NM.parse(nm)
    if pattern.m > MAX_M:
        raise PrunelibError(f"N:M storage supports M <= {MAX_M} (positions in 4 bits), got {pattern}")
    return pattern


#: format name -> class.
FORMATS: dict[str, type[SparseFormat]] = {cls.name: cls for cls in (Dense, CSR, Bitmask, NMCompressed)}


def format_class(format_name: str) -> type[SparseFormat]:
    if format_name not in FORMATS:
        raise PrunelibError(f"unknown storage format '{format_name}'; use one of {', '.join(FORMATS)}")
    return FORMATS[format_name]


def encode(weight: torch.Tensor, format_name: str, **options) -> SparseFormat:
    """Encode ``weight`` ``(rows, cols)`` in ``format_name`` (``nm`` takes ``nm="2:4"``)."""
    return format_class(format_name).encode(weight, **options)


def formula_bytes(format_name: str, rows: int, cols: int, nnz: int, value_bytes: int, **options) -> int:
    """The closed-form bytes of ``format_name`` for a matrix with ``nnz`` non-zeros."""
    return format_class(format_name).formula_bytes(rows, cols, nnz, value_bytes, **options)


# --- many matrices: byte report, files -----------------------------------------------------


def storage_report(
    weights: Mapping[str, torch.Tensor],
    formats: Iterable[str] = ("dense", "csr", "bitmask"),
    value_dtype: torch.dtype | None = torch.float16,
    *,
    nm: NM | str | None = None,
    verify: bool = True,
) -> list[dict]:
    """Bytes of storing every matrix of ``weights`` in each format, one dict per format.

    Matrices are cast to ``value_dtype`` first (None keeps their dtype); ``nm`` is the pattern
    of the ``"nm"`` format. Each dict holds the sums over matrices of ``numel``, ``nnz``,
    ``bytes`` (measured), ``formula_bytes`` and ``dense_bytes`` (in the value dtype), plus
    ``bits_per_weight = 8 * bytes / numel`` and ``compression = dense_bytes / bytes``.
    ``verify`` decodes every matrix and raises if it differs from the input.
    """
    cast = {name: (w.detach() if value_dtype is None else w.detach().to(value_dtype)) for name, w in weights.items()}
    if not cast:
        raise PrunelibError("storage_report needs at least one weight matrix")
    report = []
    for format_name in formats:
        options = {"nm": str(NM.parse(nm if nm is not None else "2:4"))} if format_name == "nm" else {}
        total = {"numel": 0, "nnz": 0, "bytes": 0, "formula_bytes": 0, "dense_bytes": 0}
        for name, weight in cast.items():
            rows, cols = _check_matrix(weight)
            encoded = encode(weight, format_name, **options)
            if verify:
                decoded = encoded.decode()
                if decoded.dtype != weight.dtype or not torch.equal(decoded, weight):
                    raise PrunelibError(f"'{name}' does not round-trip through the {format_name} format")
            nnz, value_bytes = int(torch.count_nonzero(weight)), weight.element_size()
            total["numel"] += rows * cols
            total["nnz"] += nnz
            total["bytes"] += encoded.nbytes
            total["formula_bytes"] += formula_bytes(format_name, rows, cols, nnz, value_bytes, **options)
            total["dense_bytes"] += dense_bytes(rows, cols, value_bytes)
        report.append({
            "format": format_name, **options, "matrices": len(cast), **total,
            "bits_per_weight": 8 * total["bytes"] / total["numel"],
            "compression": total["dense_bytes"] / total["bytes"] if total["bytes"] else math.inf,
        })
    return report


def save(path: str | Path, encoded: Mapping[str, SparseFormat]) -> None:
    """Write encoded matrices to one safetensors file.

    Tensor ``<name>.<field>`` holds each field; the file's metadata key ``prunelib.formats`` (:data:`METADATA_KEY`)
    is JSON ``{name: {"format": ..., "shape": [rows, cols], ...options}}``.
    """
    from safetensors.torch import save_file

    tensors, layout = {}, {}
    for name, item in encoded.items():
        if not isinstance(item, SparseFormat):
            raise PrunelibError(f"'{name}' is a {type(item).__name__}, not an encoded matrix; use formats.encode first")
        layout[name] = {"format": item.name, **item.config()}
        for field, tensor in item.state_dict().items():
            key = f"{name}.{field}"
            if key in tensors:
                raise PrunelibError(f"two entries would both be stored as tensor '{key}'; rename '{name}'")
            tensors[key] = tensor.detach().contiguous()
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(layout)})


def load(path: str | Path, device: str = "cpu") -> dict[str, SparseFormat]:
    """Read a file written by :func:`save`: ``{name: encoded matrix}``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=device) as file:
        metadata = file.metadata() or {}
        if METADATA_KEY not in metadata:
            raise PrunelibError(f"{path} has no '{METADATA_KEY}' metadata; it was not written by prunelib.storage.formats.save")
        layout = json.loads(metadata[METADATA_KEY])
        stored = set(file.keys())
        encoded = {}
        for name, config in layout.items():
            cls = format_class(config["format"])
            tensors = {field: file.get_tensor(f"{name}.{field}") for field in cls.FIELDS if f"{name}.{field}" in stored}
            encoded[name] = cls.from_state_dict(tensors, config)
    return encoded
