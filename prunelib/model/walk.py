"""Walk a decoder block by block over calibration data, as SparseGPT and Wanda do.

1. **Capture.** Run the model on each calibration batch with every block replaced by a stub that
   records *all* the arguments the model passes that block (positional and keyword: its
   attention mask, its position embeddings, which may be ``None`` ...) and passes its hidden
   states through untouched. Blocks need not be alike: Gemma-3 alternates sliding and full
   attention with their own masks and RoPE tables, and each block is replayed with its own.
   Tensors that blocks share (one mask for all full-attention blocks) are recorded once, by
   reference. Only block 0's hidden states are kept. Nothing inside the blocks runs, so the
   capture costs the embeddings and the mask construction, not a forward pass.
2. **Replay.** For each block: ``visit(index, block, forward)`` (which may attach hooks, call
   ``forward()`` and change weights), then rerun the block so the next block sees the outputs
   of this, already changed, block.

The stub assumes what every tested family does: the arguments of block ``i`` other than its
hidden states do not depend on the outputs of earlier blocks. ``tests/test_walk.py`` checks,
for every family, that the replay of an unchanged model equals a plain forward pass.

This module knows nothing about pruning methods; :mod:`prunelib.model.prune` supplies the visit.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from ..errors import NonFiniteActivationError, PrunelibError
from .architecture import ExpertWeight, block_path, decoder_blocks


class _PastLastBlock(Exception):
    """Raised by the last block's stub: what follows the blocks is not needed."""


@dataclass
class BlockCall:
    """One calibration batch: the hidden states entering the current block, and the other
    arguments the model passes each block (``inputs[i] = (args, kwargs)`` for block ``i``).

    ``run(block)`` finds the block's index by identity among the blocks captured, so a caller
    that walks the blocks in its own loop gets each block's own arguments too.
    """

    hidden: torch.Tensor
    inputs: list = field(default_factory=list)  #: per block: (positional args after hidden, kwargs)
    keyword: list = field(default_factory=list)  #: per block: hidden passed as ``hidden_states=``
    index_of: dict = field(default_factory=dict)  #: id(block) -> its index (shared by all calls)

    def arguments(self, index: int) -> tuple[tuple, dict]:
        return self.inputs[index]

    def run(self, block: nn.Module, index: int | None = None) -> torch.Tensor:
        if index is None:
            try:
                index = self.index_of[id(block)]
            except KeyError:
                raise PrunelibError("this block is not one of the decoder blocks the calls were captured for") from None
        args, kwargs = self.inputs[index]
        if self.keyword[index]:
            out = block(*args, **{**kwargs, "hidden_states": self.hidden})
        else:
            out = block(self.hidden, *args, **kwargs)
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


class _Recorder(nn.Module):
    """Stands in for a decoder block during the capture: records its arguments and returns its
    hidden states. Attributes it lacks (``attention_type`` ...) are read from the real block, and
    hooks on the real block do not fire, because the real block is not called."""

    def __init__(self, block: nn.Module, index: int, record: Callable[[int, tuple, dict], torch.Tensor]):
        super().__init__()
        object.__setattr__(self, "block", block)  # a plain attribute, not a registered child
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "record", record)

    def forward(self, *args, **kwargs):
        return self.record(self.index, args, kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["block"], name)


@contextlib.contextmanager
def _recording_stubs(blocks: nn.ModuleList, record: Callable[[int, tuple, dict], torch.Tensor]):
    """Put a :class:`_Recorder` in each block's place inside the context."""
    originals = list(blocks)
    for index, block in enumerate(originals):
        blocks[index] = _Recorder(block, index, record)
    try:
        yield
    finally:
        for index, block in enumerate(originals):
            blocks[index] = block


def capture_block_inputs(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> list[BlockCall]:
    """For each ``(batch, seq)`` token batch, record block 0's hidden states and every block's
    other arguments (see the module docstring); returns one :class:`BlockCall` per batch."""
    blocks = decoder_blocks(model)
    index_of = {id(block): index for index, block in enumerate(blocks)}
    calls: list[BlockCall] = []

    def record(index, args, kwargs):
        call = calls[-1]
        kwargs = dict(kwargs)
        keyword = not args
        hidden = kwargs.pop("hidden_states") if keyword else args[0]
        if index == 0:
            call.hidden = hidden
        call.inputs.append((tuple(args[1:]), kwargs))
        call.keyword.append(keyword)
        if index == len(blocks) - 1:
            raise _PastLastBlock
        return hidden

    with _outside_blocks_on(model, device), _recording_stubs(blocks, record):
        for batch in batches:
            calls.append(BlockCall(hidden=None, index_of=index_of))
            try:
                model(batch.to(device), use_cache=False)
            except _PastLastBlock:
                pass
            if len(calls[-1].inputs) != len(blocks):
                raise PrunelibError(f"the model called {len(calls[-1].inputs)} of its {len(blocks)} decoder blocks")
    return calls


def _run_all(block: nn.Module, index: int, calls: list[BlockCall]) -> None:
    """Run ``block`` on every recorded call, keeping no outputs (hooks see the activations)."""
    for call in calls:
        call.run(block, index)


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
            visit(index, block, functools.partial(_run_all, block, index, calls))
        for call in calls:
            call.hidden = call.run(block, index)
        block.to(home)
    return [call.hidden for call in calls]


class _ExpertInputs(torch.overrides.TorchFunctionMode):
    """Sees the inputs of each expert's matrix inside a fused experts module's forward.

    Fused experts have no module per expert to hook. Their forward multiplies the tokens routed
    to expert ``e`` by the slice ``parameter[e]`` (``F.linear`` or ``@``); a slice is a view whose
    storage address and shape name the expert, so the mode recognises it and hands the other
    operand, exactly the routed tokens, to ``see(name, x)``.
    """

    def __init__(self, units: dict[str, ExpertWeight], see: Callable[[str, torch.Tensor], None]):
        super().__init__()
        self.names = {(u.weight.data_ptr(), tuple(u.weight.shape)): name for name, u in units.items()}
        self.see = see

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear or func in (torch.matmul, torch.Tensor.__matmul__):
            x = args[0] if args else kwargs.get("input")
            weight = args[1] if len(args) > 1 else kwargs.get("weight", kwargs.get("other"))
            if isinstance(weight, torch.Tensor) and weight.dim() == 2:
                name = self.names.get((weight.data_ptr(), tuple(weight.shape)))
                if name is not None:
                    self.see(name, x)
        return func(*args, **kwargs)


@contextlib.contextmanager
def _watching_experts(module: nn.Module, units: dict[str, ExpertWeight], see) -> None:
    """Run ``module``'s forward in transformers' eager experts implementation (a Python loop over
    experts; the grouped kernels multiply all experts at once) under :class:`_ExpertInputs`."""
    config = getattr(module, "config", None)
    original = module.forward

    def forward(*args, **kwargs):
        previous = getattr(config, "_experts_implementation", None)
        if previous is not None:
            config._experts_implementation = "eager"
        seen = []
        try:
            with _ExpertInputs(units, lambda name, x: (seen.append(name), see(name, x))):
                out = original(*args, **kwargs)
            if not seen:
                raise PrunelibError(
                    f"the experts in {type(module).__name__} ran, but no expert's matrix was seen multiplying its "
                    "tokens (the forward must use F.linear or @ on per-expert slices such as gate_up_proj[e]); "
                    "prunelib cannot map this fused layout"
                )
            return out
        finally:
            if previous is not None:
                config._experts_implementation = previous

    shadowed = module.__dict__.get("forward")  # another watcher's wrapper, when two are nested
    module.forward = forward
    try:
        yield
    finally:
        if shadowed is None:
            del module.forward
        else:
            module.forward = shadowed


class InputStatistics:
    """Hooks that feed each prunable weight's input into a running statistic.

    Linears that receive the very same input tensor in one forward pass of the block
    (q/k/v, gate/up) share one statistic object, so a Hessian is accumulated once per input,
    not once per layer. An expert (an ``nn.Linear`` inside an experts list, or an
    :class:`~prunelib.model.architecture.ExpertWeight` of a fused layout) sees only the tokens the
    router sends it, so its statistic is computed from exactly those; an expert that receives no
    token has no entry. Use as a context manager around ``forward()``::

        with InputStatistics(block_linears(block), HessianStat, where="block 3") as stats:
            forward()
        stats["self_attn.q_proj"].H
    """

    def __init__(self, linears: dict, make_stat: Callable[[int, torch.device], object], where: str = ""):
        self.linears = linears
        self.make_stat = make_stat
        self.where = where
        self.stats: dict[str, object] = {}
        self._seen: list[tuple[torch.Tensor, object]] = []  # strong refs: no address reuse mid-pass
        self._handles: list = []
        self._contexts = contextlib.ExitStack()

    def __getitem__(self, name: str):
        return self.stats[name]

    def __contains__(self, name: str) -> bool:
        return name in self.stats

    def _see(self, name: str, x: torch.Tensor) -> None:
        for seen, stat in self._seen:
            if seen is x:
                self.stats.setdefault(name, stat)
                return
        if not torch.isfinite(x).all():
            raise NonFiniteActivationError(f"calibration activations entering {self.where}.{name} contain NaN or inf")
        stat = self.stats.get(name)
        if stat is None:
            stat = self.stats[name] = self.make_stat(x.shape[-1], x.device)
        stat.update(x.detach())
        self._seen.append((x, stat))

    def __enter__(self) -> "InputStatistics":
        modules = {name: unit for name, unit in self.linears.items() if isinstance(unit, nn.Module)}
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(lambda m, args, name=name: self._see(name, args[0])))
        if modules:  # a new forward pass of the block starts with the first linear's call
            first = next(iter(modules.values()))
            self._handles.append(first.register_forward_pre_hook(lambda *_: self._seen.clear(), prepend=True))
        fused: dict[int, dict[str, ExpertWeight]] = {}
        for name, unit in self.linears.items():
            if isinstance(unit, ExpertWeight):
                fused.setdefault(id(unit.module), {})[name] = unit
        for units in fused.values():
            module = next(iter(units.values())).module
            self._contexts.enter_context(_watching_experts(module, units, self._see))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._contexts.close()
        self._seen.clear()
