r"""Symmetric integer weight quantization that keeps pruned weights exactly zero.

A weight ``w`` in a group with scale ``s`` is stored as the integer code

.. math::  q = \operatorname{clamp}(\operatorname{round}(w / s), -Q, Q), \qquad Q = 2^{b-1} - 1,

and read back as ``s q``. The grid ``{-Q s, ..., 0, ..., Q s}`` is symmetric, so zero is a grid
point and a pruned weight (``w = 0``) gets the code 0 and stays exactly zero after dequantization
(an asymmetric grid with a zero point would put zero between two levels unless the zero point
is rounded to an integer, and then the grid is no longer fitted to the weights). The code
``-2^{b-1}`` is left unused: INT4 has the 15 levels -7 .. 7, INT8 the 255 levels -127 .. 127.

The scale of a group is ``max |w| / Q`` over it, rounded up to a float16 number (the
precision scales are stored in), so round-to-nearest (RTN) never clips. Groups are one output channel (a whole row, ``group_size=None``) or
``group_size`` consecutive inputs of a row (``cols / group_size`` scales per row). A group of
zeros gets scale 1: its codes are 0 whatever the scale is.

Weights are ``(out_features, in_features)``; scales are float32 ``(out, groups)``; codes are
int8 ``(out, in)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import PrunelibError

#: the integer widths a weight code may have
BITS = range(2, 9)


def levels(bits: int) -> int:
    """``Q = 2^(bits-1) - 1``: ``bits``-bit codes run from ``-Q`` to ``Q`` (``-2^(bits-1)`` unused)."""
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class QuantSpec:
    """``bits`` per weight (2 to 8) and the group: ``None`` = one scale per output channel."""

    bits: int = 4
    group_size: int | None = 128

    def __post_init__(self):
        if not (isinstance(self.bits, int) and self.bits in BITS):
            raise PrunelibError(f"bits must be an integer from {BITS[0]} to {BITS[-1]}, got {self.bits!r}")
        if self.group_size is not None and not (isinstance(self.group_size, int) and self.group_size >= 1):
            raise PrunelibError(f"group_size must be a positive integer or None (per channel), got {self.group_size!r}")

    @classmethod
    def parse(cls, text: str | "QuantSpec") -> "QuantSpec":
        """``"int4"`` (per channel), ``"int4-g128"`` (groups of 128), ``"int8"``..."""
        if isinstance(text, QuantSpec):
            return text
        head, _, group = str(text).lower().partition("-g")
        if not head.startswith("int") or not head[3:].isdigit() or (group and not group.isdigit()):
            raise PrunelibError(f"quantization must look like 'int4', 'int8' or 'int4-g128', got '{text}'")
        return cls(int(head[3:]), int(group) if group else None)

    @property
    def levels(self) -> int:
        """``Q = 2^(bits-1) - 1``: codes run from ``-Q`` to ``Q``."""
        return levels(self.bits)

    def groups(self, cols: int) -> int:
        """Scales per row for ``cols`` inputs."""
        if self.group_size is None:
            return 1
        if cols % self.group_size:
            raise PrunelibError(f"{cols} input columns are not divisible by the group size {self.group_size}")
        return cols // self.group_size

    def scale_bits(self, cols: int, scale_bytes: int = 2) -> float:
        """Bits per weight spent on scales (stored in ``scale_bytes``, float16 by default)."""
        return 8 * scale_bytes * self.groups(cols) / cols

    def __str__(self) -> str:
        return f"int{self.bits}" + (f"-g{self.group_size}" if self.group_size else "")


class Quantized(NamedTuple):
    weight: torch.Tensor  #: dequantized ``scales * codes``, in the input's dtype
    codes: torch.Tensor  #: int8 ``(out, in)``, in ``[-Q, Q]``
    scales: torch.Tensor  #: float32 ``(out, groups)``


def group_scales(weight: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``max |w| / Q`` per group, rounded *up* to a float16 value: float32 ``(out, groups)``; 1 for
    a group of zeros. Files store scales in float16, so rounding them here makes the stored model
    exactly the computed one, and rounding up means no weight is clipped."""
    rows, cols = weight.shape
    peak = weight.detach().float().abs().reshape(rows, spec.groups(cols), -1).amax(-1)
    exact = torch.where(peak > 0, peak / spec.levels, torch.ones_like(peak))
    half = exact.half()
    half = torch.where(half.float() < exact, torch.nextafter(half, torch.full_like(half, math.inf)), half)
    return half.float()


def expand_scales(scales: torch.Tensor, cols: int) -> torch.Tensor:
    """Scales ``(out, groups)`` repeated over each group's columns: ``(out, cols)``."""
    return scales.repeat_interleave(cols // scales.shape[1], dim=1)


def quantize_codes(weight: torch.Tensor, scales: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``clamp(round(w / s), -Q, Q)`` as int8 ``(out, in)``; ``weight`` may be one column ``(out,)``
    with ``scales`` ``(out,)``. Rounding is half to even (torch.round)."""
    s = scales if weight.dim() == 1 else expand_scales(scales, weight.shape[1])
    return torch.round(weight.float() / s).clamp_(-spec.levels, spec.levels).to(torch.int8)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``s q``: float ``(out, in)`` from int8 codes ``(out, in)`` and scales ``(out, groups)``."""
    return (codes.float() * expand_scales(scales.float(), codes.shape[1])).to(dtype)


def rtn(weight: torch.Tensor, spec: QuantSpec | str) -> Quantized:
    """Round-to-nearest quantization of ``weight`` ``(out, in)``; zeros stay exactly zero."""
    spec = QuantSpec.parse(spec)
    if weight.dim() != 2:
        raise PrunelibError(f"a weight matrix must be 2-D (out, in), got shape {tuple(weight.shape)}")
    scales = group_scales(weight, spec)
    codes = quantize_codes(weight, scales, spec)
    return Quantized(dequantize(codes, scales, weight.dtype), codes, scales)
