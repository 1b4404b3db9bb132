"""Quantized sparse matrices in real storage: integer codes packed ``bits`` each, float16 scales,
and the sparsity metadata of a :mod:`prunelib.storage.formats` layout.

A :class:`QuantizedMatrix` stores the int8 code matrix of :mod:`prunelib.core.quantize` in one of
the sparse layouts (``dense``, ``bitmask``, ``csr``, ``nm``), then replaces that layout's
``values`` (the codes of the stored entries) by a packed stream: code ``q`` is written as the
unsigned ``q + 2^(bits-1)`` in ``bits`` bits (:func:`prunelib.storage.formats.pack_uints`), so INT4
codes go two to a byte. The layout's metadata (bitmask, column indices, N:M positions) is kept
as it is. Bytes, with ``S`` stored codes and ``G`` scales per row:

    ``ceil(S * bits / 8) + metadata(layout) + rows * G * 2``

``decode`` gives back the exact dequantized matrix ``codes * scales`` (scales are float16
values, see :func:`prunelib.core.quantize.group_scales`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from ..core.quantize import dequantize, levels
from ..errors import PrunelibError
from .formats import FORMATS, SparseFormat, format_class, pack_uints, unpack_uints

#: safetensors metadata key holding the layout of every packed matrix.
METADATA_KEY = "prunelib.packing"  # the file format's name (stable), not a module path


@dataclass(frozen=True, eq=False)
class QuantizedMatrix:
    """``(rows, cols)`` codes in ``layout`` with values packed in ``bits``; ``scales`` float16 ``(rows, G)``."""

    shape: tuple[int, int]
    layout: str
    bits: int
    count: int  #: codes stored by the layout (its ``values.numel()``)
    packed: torch.Tensor  #: uint8 ``(ceil(count * bits / 8),)``
    metadata: dict  #: the layout's tensors other than ``values``
    scales: torch.Tensor
    options: dict  #: the layout's options (``{"nm": "2:4"}`` for ``nm``)

    @classmethod
    def encode(cls, codes: torch.Tensor, scales: torch.Tensor, bits: int, layout: str = "bitmask",
               **options) -> "QuantizedMatrix":
        """Pack int8 ``codes`` ``(rows, cols)`` in ``[-2^(bits-1)+1, 2^(bits-1)-1]`` and ``scales``."""
        if codes.dtype != torch.int8 or codes.dim() != 2:
            raise PrunelibError(f"codes must be a 2-D int8 tensor, got {codes.dtype} {tuple(codes.shape)}")
        peak = levels(bits)
        if codes.numel() and int(codes.abs().max()) > peak:
            raise PrunelibError(f"codes reach {int(codes.abs().max())}, more than {peak} for {bits} bits")
        if scales.dim() != 2 or scales.shape[0] != codes.shape[0] or codes.shape[1] % scales.shape[1]:
            raise PrunelibError(f"scales {tuple(scales.shape)} do not fit codes {tuple(codes.shape)}")
        half = scales.half()
        if not torch.equal(half.float(), scales.float()):
            raise PrunelibError("scales must be float16 values (use prunelib.core.quantize.group_scales)")
        encoded = format_class(layout).encode(codes, **options)
        state = encoded.state_dict()
        values = state.pop("values")
        packed = pack_uints(values.to(torch.int64) + levels(bits) + 1, bits)  # stored unsigned
        config = {k: v for k, v in encoded.config().items() if k != "shape"}
        return cls(tuple(codes.shape), layout, bits, values.numel(), packed, state, half, config)

    def codes(self) -> torch.Tensor:
        """The int8 code matrix ``(rows, cols)``."""
        values = (unpack_uints(self.packed, self.bits, self.count) - levels(self.bits) - 1).to(torch.int8)
        layout = format_class(self.layout)
        config = {"shape": list(self.shape), **self.options}
        shape = (self.shape[0], self.count // self.shape[0]) if self.layout in ("dense", "nm") else (self.count,)
        return layout.from_state_dict({"values": values.view(shape), **self.metadata}, config).decode()

    def decode(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dequantized matrix ``codes * scales`` in ``dtype``."""
        return dequantize(self.codes(), self.scales.float(), dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"packed": self.packed, "scales": self.scales, **self.metadata}

    def config(self) -> dict:
        return {"shape": list(self.shape), "layout": self.layout, "bits": self.bits, "count": self.count,
                **self.options}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor], config: Mapping) -> "QuantizedMatrix":
        layout = config["layout"]
        metadata = {field: tensors[field] for field in format_class(layout).FIELDS if field != "values"}
        options = {k: v for k, v in config.items() if k not in ("shape", "layout", "bits", "count")}
        return cls(tuple(config["shape"]), layout, int(config["bits"]), int(config["count"]), tensors["packed"],
                   metadata, tensors["scales"], options)


def packed_bytes(rows: int, cols: int, nnz: int, bits: int, groups: int, layout: str = "bitmask", **options) -> int:
    """Closed form of :attr:`QuantizedMatrix.nbytes`: the layout's bytes with 1-byte values, minus
    its values, plus ``ceil(S * bits / 8)`` packed codes and ``rows * groups`` float16 scales."""
    if layout not in FORMATS:
        raise PrunelibError(f"unknown layout '{layout}'; use one of {', '.join(FORMATS)}")
    with_values = format_class(layout).formula_bytes(rows, cols, nnz, 1, **options)
    stored = stored_codes(rows, cols, nnz, layout, **options)
    return with_values - stored + math.ceil(stored * bits / 8) + 2 * rows * groups


def stored_codes(rows: int, cols: int, nnz: int, layout: str, **options) -> int:
    """How many codes a layout stores: every entry (dense), the non-zeros (bitmask, csr), N per M (nm)."""
    if layout == "dense":
        return rows * cols
    if layout == "nm":
        from ..core.masks import NM

        n, m = NM.parse(options.get("nm", "2:4"))
        return rows * (cols // m) * n
    return nnz


Stored = SparseFormat | QuantizedMatrix


def save(path: str | Path, matrices: Mapping[str, Stored], extra: Mapping[str, torch.Tensor] | None = None,
         metadata: Mapping[str, str] | None = None) -> None:
    """One safetensors file: tensor ``<name>.<field>`` for every field of every matrix (packed
    quantized or a plain :mod:`prunelib.storage.formats` layout), ``extra`` tensors under their own names,
    and the layouts as JSON under the metadata key ``prunelib.packing`` (:data:`METADATA_KEY`)."""
    from safetensors.torch import save_file

    tensors, layout = {}, {}
    for name, item in matrices.items():
        kind = "quantized" if isinstance(item, QuantizedMatrix) else "format"
        layout[name] = {"kind": kind, **(item.config() if kind == "quantized" else {"format": item.name, **item.config()})}
        for field, tensor in item.state_dict().items():
            tensors[f"{name}.{field}"] = tensor.detach().contiguous()
    for name, tensor in (extra or {}).items():
        if name in tensors:
            raise PrunelibError(f"extra tensor '{name}' collides with a stored matrix field")
        tensors[name] = tensor.detach().contiguous()
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(layout), **(metadata or {})})


def load(path: str | Path) -> tuple[dict[str, Stored], dict[str, torch.Tensor], dict[str, str]]:
    """Read :func:`save`'s file: ``(matrices, extra tensors, metadata)``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as file:
        metadata = dict(file.metadata() or {})
        if METADATA_KEY not in metadata:
            raise PrunelibError(f"{path} has no '{METADATA_KEY}' metadata; it was not written by prunelib.storage.packing.save")
        layout = json.loads(metadata.pop(METADATA_KEY))
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    matrices = {}
    for name, config in layout.items():
        config = {k: v for k, v in config.items() if k != "kind"}
        quantized = "layout" in config
        cls = format_class(config["layout"] if quantized else config["format"])
        fields = (["packed", "scales"] + [f for f in cls.FIELDS if f != "values"]) if quantized else list(cls.FIELDS)
        missing = [f"{name}.{field}" for field in fields if f"{name}.{field}" not in tensors]
        if missing:
            raise PrunelibError(f"{path} lacks the tensors {missing}")
        own = {field: tensors.pop(f"{name}.{field}") for field in fields}
        matrices[name] = QuantizedMatrix.from_state_dict(own, config) if quantized else cls.from_state_dict(own, config)
    return matrices, tensors, metadata
