r"""Fine-tuning a pruned model without losing its sparsity, and LoRA that merges sparse.

**Fixed masks.** :class:`SparsityKeeper` stores each pruned linear's mask once (``W != 0`` when
it is created) and keeps the pruned weights at zero in two ways: a gradient hook zeroes their
gradients, so no optimizer moment ever builds up for them, and :meth:`SparsityKeeper.apply`
re-zeroes them after every optimizer step, which also undoes anything a step does to a zero
weight without a gradient (coupled L2 weight decay adds ``\lambda w = 0``; decoupled decay
multiplies by ``1 - \eta\lambda``, both harmless; the re-zeroing guarantees it for any optimizer).

**LoRA.** :class:`LoRALinear` adds a trainable low-rank update to a frozen linear,
``y = W x + (\alpha / r) B A x`` with ``A`` ``(r, in)`` and ``B`` ``(out, r)``, ``B = 0`` at the
start. ``B A`` is dense, so merging it as ``W + (\alpha/r) B A`` would fill every pruned
position; :meth:`LoRALinear.merged_weight` masks the update, ``W + M \odot (\alpha/r) B A``,
which keeps the zeros (the masked part of the update is lost: the model after merging is not
exactly the model trained, unless the update is trained masked too, as ``masked=True`` does).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..errors import PrunelibError
from .architecture import ExpertWeight, prunable_linear_paths, prunable_linears, weight_matrix


class SparsityKeeper:
    """Holds the masks of a model's prunable linears and keeps their zeros through training.

    ``keeper = SparsityKeeper(model)`` after pruning; then ``loss.backward(); optimizer.step();
    keeper.apply()``. ``keeper.remove()`` detaches the gradient hooks.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        linears = prunable_linears(model)
        self.masks = {name: (weight_matrix(module) != 0).detach().clone() for name, module in linears.items()}
        self._handles = []
        fused: dict[torch.Tensor, dict[int, torch.Tensor]] = {}  # 3-D parameter -> expert -> mask
        for name, module in linears.items():
            if isinstance(module, ExpertWeight):  # stored layout: transposed when the experts module says so
                mask = self.masks[name].T if module.transposed else self.masks[name]
                fused.setdefault(getattr(module.module, module.parameter), {})[module.expert] = mask
                continue
            keep = self.masks[name] if weight_matrix(module) is module.weight else self.masks[name].T
            self._handles.append(module.weight.register_hook(lambda grad, keep=keep: grad * keep))
        for parameter, masks in fused.items():  # one hook on the 3-D parameter, all experts' masks stacked
            keep = torch.stack([masks[e] for e in range(len(masks))])
            self._handles.append(parameter.register_hook(lambda grad, keep=keep: grad * keep))

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (call after each optimizer step)."""
        for name, module in prunable_linears(self.model).items():
            W = weight_matrix(module)
            W.mul_(self.masks[name])

    def revived(self) -> int:
        """How many pruned weights are not zero now (0 unless something bypassed the keeper)."""
        return sum(int((weight_matrix(m)[~self.masks[n]] != 0).sum()) for n, m in prunable_linears(self.model).items())

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class LoRALinear(nn.Module):
    """A frozen linear plus ``(alpha / rank) * B @ A``; ``masked=True`` trains the update through
    the base weight's sparsity mask, so that merging loses nothing."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, masked: bool = False):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise PrunelibError(f"LoRALinear wraps nn.Linear, got {type(base).__name__}")
        self.base, self.rank, self.scale = base, rank, alpha / rank
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.register_buffer("mask", (base.weight != 0) if masked else None, persistent=False)

    def delta(self) -> torch.Tensor:
        update = self.scale * (self.B @ self.A)
        return update * self.mask if self.mask is not None else update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            return nn.functional.linear(x, self.base.weight + self.delta(), self.base.bias)
        return self.base(x) + self.scale * nn.functional.linear(nn.functional.linear(x, self.A), self.B)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """``W + M * delta``: the update restricted to the kept weights."""
        keep = self.base.weight != 0
        return self.base.weight + self.delta() * keep


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, masked: bool = False) -> dict[str, LoRALinear]:
    """Replace every prunable ``nn.Linear`` of ``model`` by a :class:`LoRALinear` (in place) and
    freeze everything else; returns the adapters by name."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    adapters, paths = {}, prunable_linear_paths(model)
    for name, module in prunable_linears(model).items():
        if not isinstance(module, nn.Linear):
            raise PrunelibError(f"LoRA here wraps nn.Linear; {name} is a {type(module).__name__}")
        parent_name, _, child = paths[name].rpartition(".")
        adapter = LoRALinear(module, rank, alpha, masked)
        setattr(model.get_submodule(parent_name), child, adapter)
        adapters[name] = adapter
    return adapters


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Put every :class:`LoRALinear` back as a plain linear holding its masked merged weight;
    returns how many were merged."""
    merged = 0
    for path, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            module.base.weight.copy_(module.merged_weight())
            parent_name, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.base)
            merged += 1
    return merged


def batches(tokens: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless shuffled batches of the rows of ``tokens`` ``(n, seqlen)``, reshuffled every epoch."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        for index in torch.randperm(tokens.shape[0], generator=generator).split(batch_size):
            if len(index) == batch_size:
                yield tokens[index]


def train(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 4,
    weight_decay: float = 0.0,
    warmup: int = 10,
    keeper: SparsityKeeper | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
    seed: int = 0,
    quiet: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Next-token training on the rows of ``tokens`` ``(n, seqlen)`` with AdamW, linear warm-up and
    cosine decay; ``keeper`` keeps the sparsity after every step. Trains ``parameters`` (default:
    every parameter that requires grad). Returns ``{"losses", "seconds", "steps", "tokens_seen"}``."""
    if steps < 1:
        raise PrunelibError(f"steps must be positive, got {steps}")
    if tokens.shape[0] < batch_size:
        raise PrunelibError(f"{tokens.shape[0]} training sequences are fewer than one batch of {batch_size}")
    trainable = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    if not trainable:
        raise PrunelibError("no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup))
                                                 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    losses, start = [], time.perf_counter()
    stream = batches(tokens, batch_size, seed)
    with torch.enable_grad():
        for step in tqdm(range(steps), desc="train", disable=quiet, unit="step"):
            batch = next(stream).to(device)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if keeper is not None:
                keeper.apply()
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, losses[-1])
    model.train(was_training)
    return {"losses": losses, "seconds": time.perf_counter() - start, "steps": steps,
            "tokens_seen": steps * batch_size * tokens.shape[1]}
