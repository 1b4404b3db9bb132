"""The registry of pruning methods: each method defined once, everything else reads it.

A method is a pure function of one weight ``W`` ``(out_features, in_features)`` and one statistic
of its calibration inputs ``X`` ``(tokens, in_features)``:

* ``magnitude``: no statistic; score ``|W_ij|``;
* ``wanda``: input norms ``||X_j||_2`` (:class:`~prunelib.core.stats.InputNormStat`); score
  ``|W_ij| ||X_j||_2``;
* ``sparsegpt``: the Hessian ``H = 2/n X^T X`` (:class:`~prunelib.core.stats.HessianStat`);
  OBS-style removal with weight updates.

The model walk, the sensitivity measurement, the command line and the experiments all go
through :data:`METHODS`, so adding a method means adding one :class:`Method` here (and its math in
its own module). Masks are boolean with ``True`` = kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import PrunelibError
from .magnitude import magnitude
from .masks import NM, Pruned
from .sparsegpt import sparsegpt
from .stats import STATISTICS
from .wanda import wanda, wanda_scores


@dataclass(frozen=True)
class Method:
    """One pruning method: what it needs, how it scores, how it prunes."""

    name: str
    label: str  #: how tables and figures name it
    statistic: str | None  #: key of :data:`~prunelib.core.stats.STATISTICS` it needs, None = no calibration
    #: ``(W, stat) -> (out, in)`` importance (used to choose channel permutations)
    scores: Callable[[torch.Tensor, object], torch.Tensor]
    #: ``(W, stat, *, sparsity, nm, group, name, **options) -> Pruned``
    prune: Callable[..., Pruned]
    #: comparison groups it accepts (``"matrix"``/``"row"``) and the default; () = chooses its own
    groups: tuple[str, ...] = ()
    default_group: str | None = None
    #: extra keyword options and their defaults
    options: dict = field(default_factory=dict)
    #: whether it can quantize the kept weights in the same pass (``quantize=`` option)
    joint_quantization: bool = False
    #: the module holding its math (a changed module invalidates cached results of this method)
    module: str = ""

    @property
    def uses_calibration(self) -> bool:
        return self.statistic is not None

    def check(self, group: str | None, options: dict) -> None:
        """Refuse a group or option this method does not take."""
        if group is not None and group not in self.groups:
            if not self.groups:
                raise PrunelibError(f"{self.name} chooses its mask per block of columns; group applies to "
                                    f"{', '.join(m.name for m in METHODS.values() if m.groups)}")
            raise PrunelibError(f"unknown group '{group}' for {self.name}; use one of {', '.join(self.groups)}")
        unknown = set(options) - set(self.options)
        if unknown:
            takes = f"it takes {', '.join(sorted(self.options))}" if self.options else "it takes none"
            raise PrunelibError(f"{self.name} takes no options {sorted(unknown)}; {takes}")


def _magnitude(weight, stat, *, sparsity=0.0, nm: NM | None = None, group=None, name="layer") -> Pruned:
    return magnitude(weight, sparsity=sparsity, nm=nm, group=group or "matrix")


def _wanda(weight, stat, *, sparsity=0.0, nm: NM | None = None, group=None, name="layer") -> Pruned:
    return wanda(weight, stat.norms, sparsity=sparsity, nm=nm, group=group or "row")


def _sparsegpt(weight, stat, *, sparsity=0.0, nm: NM | None = None, group=None, name="layer", **options) -> Pruned:
    return sparsegpt(weight, stat.H, sparsity=sparsity, nm=nm, name=name, **options)


METHODS: dict[str, Method] = {
    "magnitude": Method("magnitude", "magnitude", None, lambda W, stat: W.abs(), _magnitude,
                        groups=("matrix", "row"), default_group="matrix", module="prunelib.core.magnitude"),
    "wanda": Method("wanda", "Wanda", "norms", lambda W, stat: wanda_scores(W, stat.norms), _wanda,
                    groups=("matrix", "row"), default_group="row", module="prunelib.core.wanda"),
    # the diagonal of H stands in for the inverse-Hessian saliency when scores are needed
    "sparsegpt": Method("sparsegpt", "SparseGPT", "hessian", lambda W, stat: wanda_scores(W, stat.H.diagonal()),
                        _sparsegpt, options={"blocksize": 128, "percdamp": 0.01, "quantize": None},
                        joint_quantization=True, module="prunelib.core.sparsegpt"),
}
for _method in METHODS.values():
    assert _method.statistic is None or _method.statistic in STATISTICS, _method


def get_method(name: str) -> Method:
    """The registered method ``name``, or an error listing the known ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise PrunelibError(f"unknown method '{name}'; use one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Method", "get_method"]
