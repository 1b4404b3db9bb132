"""Walk a decoder block by block over calibration data, as SparseGPT and Wanda do.

1. Run the model on the calibration batches until block 0 and record *every* argument the
   block receives (positional and keyword: ``position_embeddings``, ``attention_mask``,
   which may be ``None``, ``position_ids`` ...). Newer transformers releases add arguments;
   replaying them verbatim keeps the walk working.
2. For each block: ``visit(index, block, forward)`` (which may attach hooks, call
   ``forward()`` and change weights), then rerun the block so the next block sees the
   outputs of this, already changed, block.

This module knows nothing about pruning methods; :mod:`prunelib.prune` supplies the visit.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from .errors import NonFiniteActivationError
from .models import block_path, decoder_blocks


class _ReachedBlock(Exception):
    """Raised by the capture hook to stop the forward pass at block 0."""


@dataclass
class BlockCall:
    """One recorded call of a decoder block: its hidden states and all other arguments."""

    hidden: torch.Tensor
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    hidden_is_keyword: bool = False

    def run(self, block: nn.Module) -> torch.Tensor:
        if self.hidden_is_keyword:
            out = block(*self.args, **{**self.kwargs, "hidden_states": self.hidden})
        else:
            out = block(self.hidden, *self.args, **self.kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


@contextlib.contextmanager
def _outside_blocks_on(model: nn.Module, device: torch.device):
    """Temporarily move every parameter and buffer *outside* the decoder blocks to ``device``.

    Lets a model that lives on the CPU feed block 0 on an accelerator without ever holding
    more than one block there.
    """
    prefix = block_path(model) + "."
    tensors = [
        t
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if not name.startswith(prefix) and t.device != device
    ]
    homes = [t.data for t in tensors]
    for t in tensors:
        t.data = t.data.to(device)
    try:
        yield
    finally:
        for t, home in zip(tensors, homes):
            t.data = home


def capture_block_inputs(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> list[BlockCall]:
    """Run ``model`` on each ``(batch, seq)`` token batch up to block 0; return the recorded calls."""
    calls: list[BlockCall] = []

    def record(module, args, kwargs):
        if args:
            calls.append(BlockCall(args[0], tuple(args[1:]), dict(kwargs)))
        else:
            kwargs = dict(kwargs)
            calls.append(BlockCall(kwargs.pop("hidden_states"), (), kwargs, hidden_is_keyword=True))
        raise _ReachedBlock

    handle = decoder_blocks(model)[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        with _outside_blocks_on(model, device):
            for batch in batches:
                try:
                    model(batch.to(device), use_cache=False)
                except _ReachedBlock:
                    pass
    finally:
        handle.remove()
    return calls


def _run_all(block: nn.Module, calls: list[BlockCall]) -> None:
    """Run ``block`` on every recorded call, keeping no outputs (hooks see the activations)."""
    for call in calls:
        call.run(block)


Visit = Callable[[int, nn.Module, Callable[[], None]], None]


@torch.no_grad()
def sequential(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    visit: Visit | None,
    *,
    device: torch.device | str | None = None,
    quiet: bool = False,
    desc: str = "blocks",
) -> list[torch.Tensor]:
    """Walk the blocks of ``model`` in order; return the last block's outputs per batch.

    ``visit(index, block, forward)`` is called with the block on ``device``; ``forward()``
    runs the block on the current inputs (for hooks to observe) and keeps no outputs. Then
    the block runs once more and its outputs replace its inputs, batch by batch, so only one
    set of calibration activations is alive. Blocks are moved to ``device`` one at a time
    and back to where they were afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    calls = capture_block_inputs(model, batches, device)

    for index, block in enumerate(tqdm(decoder_blocks(model), desc=desc, disable=quiet, unit="block")):
        home = next(block.parameters()).device
        block.to(device)
        if visit is not None:
            visit(index, block, functools.partial(_run_all, block, calls))
        for call in calls:
            call.hidden = call.run(block)
        block.to(home)
    return [call.hidden for call in calls]


class InputStatistics:
    """Forward hooks that feed each linear's input into a running statistic.

    Linears that receive the very same input tensor in one forward pass of the block
    (q/k/v, gate/up) share one statistic object, so a Hessian is accumulated once per input,
    not once per layer. Use as a context manager around ``forward()``::

        with InputStatistics(block_linears(block), HessianStat, where="block 3") as stats:
            forward()
        stats["self_attn.q_proj"].H
    """

    def __init__(self, linears: dict[str, nn.Module], make_stat: Callable[[int, torch.device], object], where: str = ""):
        self.linears = linears
        self.make_stat = make_stat
        self.where = where
        self.stats: dict[str, object] = {}
        self._seen: list[tuple[torch.Tensor, object]] = []  # strong refs: no address reuse mid-pass
        self._handles: list = []

    def __getitem__(self, name: str):
        return self.stats[name]

    def _hook(self, name: str):
        def hook(module, args):
            x = args[0]
            for seen, stat in self._seen:
                if seen is x:
                    self.stats.setdefault(name, stat)
                    return
            if not torch.isfinite(x).all():
                raise NonFiniteActivationError(
                    f"calibration activations entering {self.where}.{name} contain NaN or inf"
                )
            stat = self.stats.get(name)
            if stat is None:
                stat = self.stats[name] = self.make_stat(x.shape[-1], x.device)
            stat.update(x.detach())
            self._seen.append((x, stat))

        return hook

    def __enter__(self) -> "InputStatistics":
        for name, module in self.linears.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
            # a new forward pass of the block starts with the first linear's call
        first = next(iter(self.linears.values()))
        self._handles.append(first.register_forward_pre_hook(lambda *_: self._seen.clear(), prepend=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._seen.clear()
