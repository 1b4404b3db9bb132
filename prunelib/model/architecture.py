"""Architecture facts, found in the model instead of listed per family.

Everything pruning needs to know about a decoder is discovered here, once, from the module tree:

* **the decoder blocks**: the ``nn.ModuleList`` whose items are the classes transformers names in
  ``model._no_split_modules`` (the units it never splits across devices), or failing that the
  largest list of alike modules that hold linears;
* **the prunable weights of a block**: every ``nn.Linear`` (and GPT-2's ``Conv1D``), plus each
  expert's matrix in mixture-of-experts layers that store experts as fused 3-D parameters
  (:class:`ExpertWeight`); routers are never prunable;
* **the MLP layout** (:func:`mlp_layout`): which linears produce the MLP channels and which one
  consumes them, including a fused ``[gate; up]`` producer;
* **the attention layout** (:func:`attention_layout`): the q/k/v/output projections and the head
  geometry.

The *names* of the projections are the only table kept (:data:`ROLE_NAMES`); shapes decide the
rest, so a family whose names fit is supported without being listed, and one that does not fit
gets an :class:`~prunelib.errors.UnsupportedModelError` that says which part is missing.

Weights are always handled as an ``(out_features, in_features)`` matrix ``W`` so that a layer
computes ``y = x @ W.T``. GPT-2's ``Conv1D`` and transposed expert layouts store the transpose;
:func:`weight_matrix` and :func:`set_weight_matrix` hide that difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnsupportedModelError

try:  # transformers keeps GPT-2's transposed linear here
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - very old transformers
    Conv1D = ()  # type: ignore[assignment]


#: The names projections go by, per role. The one table of names: everything else is shapes.
ROLE_NAMES = {
    "mlp_producer": ("gate_proj", "up_proj", "fc1", "c_fc", "dense_h_to_4h", "w1", "w3"),
    "mlp_fused_producer": ("gate_up_proj",),  # rows are [gate; up], each `width` long
    "mlp_consumer": ("down_proj", "fc2", "c_proj", "dense_4h_to_h", "w2"),
    "query": ("q_proj",),
    "key": ("k_proj",),
    "value": ("v_proj",),
    "attention_output": ("o_proj", "out_proj", "dense", "c_proj"),
    "fused_qkv": ("qkv_proj", "query_key_value", "c_attn", "Wqkv"),
}
#: config fields that hold the MLP width, in the order they are looked for
MLP_WIDTH_KEYS = ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", "moe_intermediate_size")


# --------------------------------------------------------------------------- blocks


def _alike_lists(model: nn.Module):
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1:
            yield path, module


def block_path(model: nn.Module) -> str:
    """Attribute path of the ``nn.ModuleList`` of decoder blocks (``model.layers``, ``transformer.h`` ...).

    Found from ``model._no_split_modules`` when the model declares it, else as the list of alike
    modules holding the most linear weights. Raises :class:`UnsupportedModelError` when there is none.
    """
    cached = getattr(model, "_prunelib_block_path", None)
    if cached is not None:
        return cached
    no_split = set(getattr(model, "_no_split_modules", None) or ())
    declared = [(path, blocks) for path, blocks in _alike_lists(model) if type(blocks[0]).__name__ in no_split]
    candidates = declared or [(path, blocks) for path, blocks in _alike_lists(model) if block_linears(blocks[0])]
    if not candidates:
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise UnsupportedModelError(
            f"'{kind}' has no decoder blocks that prunelib can find: no nn.ModuleList of alike modules "
            "holding nn.Linear layers (and none named by the model's _no_split_modules)"
        )
    # a multimodal model may list vision blocks too: the decoder's are those holding the most weights
    path, _ = max(candidates, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    try:
        object.__setattr__(model, "_prunelib_block_path", path)
    except (AttributeError, TypeError):  # pragma: no cover - exotic module classes
        pass
    return path


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of decoder blocks, in execution order."""
    return model.get_submodule(block_path(model))


# --------------------------------------------------------------------------- prunable weights


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (bool(Conv1D) and isinstance(module, Conv1D))


@dataclass(frozen=True, eq=False)
class ExpertWeight:
    """One expert's matrix inside a fused mixture-of-experts parameter.

    transformers stores the experts of a layer as 3-D parameters, ``gate_up_proj`` of shape
    ``(experts, 2 * width, hidden)`` and ``down_proj`` ``(experts, hidden, width)``, or their
    transposes when the experts module says ``is_transposed``. ``weight`` is the expert's slice,
    a view: writing through :func:`set_weight_matrix` changes the parameter in place.
    """

    module: nn.Module  #: the experts module holding the parameter
    parameter: str  #: its attribute name (``gate_up_proj``, ``down_proj`` ...)
    expert: int
    transposed: bool = False

    @property
    def weight(self) -> torch.Tensor:
        return getattr(self.module, self.parameter)[self.expert]

    @property
    def bias(self) -> None:  # fused expert biases are not pruned; treated like a linear without bias
        return None


def expert_count(module: nn.Module) -> int | None:
    """Number of experts of a fused experts module (one holding 3-D parameters), else ``None``."""
    fused = [p for p in module.parameters(recurse=False) if p.dim() == 3]
    if not fused or len({p.shape[0] for p in fused}) != 1:
        return None
    return int(fused[0].shape[0])


def _expert_weights(path: str, module: nn.Module) -> dict[str, ExpertWeight]:
    transposed = bool(getattr(module, "is_transposed", False))
    return {
        f"{path}.{name}.{e}": ExpertWeight(module, name, e, transposed)
        for name, p in module.named_parameters(recurse=False) if p.dim() == 3
        for e in range(p.shape[0])
    }


def _is_router(name: str, module: nn.Module, parent: nn.Module) -> bool:
    """A linear that decides where tokens go: its sibling is an ``experts`` module and it outputs
    one logit per expert, or it is a one-output gate (a shared expert's). Never pruned."""
    experts = getattr(parent, "experts", None)
    if experts is None:
        return False
    count = len(experts) if isinstance(experts, nn.ModuleList) else expert_count(experts)
    out = weight_matrix(module).shape[0]
    return out == 1 or out == count


def block_linears(block: nn.Module) -> dict[str, nn.Module | ExpertWeight]:
    """Prunable weights of one block by their name inside it (``self_attn.q_proj``, ``mlp.c_fc``,
    ``mlp.experts.down_proj.3`` for expert 3 of a fused layout). Routers are left out."""
    found: dict[str, nn.Module | ExpertWeight] = {}
    modules = dict(block.named_modules())
    for name, module in modules.items():
        if is_linear(module):
            parent = modules[name.rpartition(".")[0]]
            if not _is_router(name, module, parent):
                found[name] = module
        elif expert_count(module) is not None:
            found.update(_expert_weights(name, module))
    return found


def prunable_linears(model: nn.Module) -> dict[str, nn.Module | ExpertWeight]:
    """Every prunable weight inside the decoder blocks, named ``<block index>.<name in block>``.

    Embeddings, the LM head and routers are left alone, as in the papers.
    """
    return {
        f"{index}.{name}": module
        for index, block in enumerate(decoder_blocks(model))
        for name, module in block_linears(block).items()
    }


def prunable_linear_paths(model: nn.Module) -> dict[str, str]:
    """``"<block index>.<name in block>"`` (the keys of :func:`prunable_linears`) -> the linear's
    full module path in ``model`` (``model.layers.3.mlp.up_proj``), the prefix of its state-dict keys.

    Fused experts have no module of their own; they raise :class:`UnsupportedModelError`."""
    path_of = {id(module): path for path, module in model.named_modules()}
    paths = {}
    for key, module in prunable_linears(model).items():
        if isinstance(module, ExpertWeight):
            raise UnsupportedModelError(
                f"{key} is one expert of a fused 3-D parameter; this operation needs each linear "
                "as its own module (nn.Linear or Conv1D)"
            )
        paths[key] = path_of[id(module)]
    return paths


def weight_matrix(module: nn.Module | ExpertWeight) -> torch.Tensor:
    """The weight as ``(out_features, in_features)``; a view, not a copy."""
    if isinstance(module, ExpertWeight):
        return module.weight.t() if module.transposed else module.weight
    return module.weight.t() if (Conv1D and isinstance(module, Conv1D)) else module.weight


def set_weight_matrix(module: nn.Module | ExpertWeight, weight: torch.Tensor) -> None:
    """Write an ``(out_features, in_features)`` matrix back in the module's own layout and dtype."""
    with torch.no_grad():
        target = weight_matrix(module)
        target.copy_(weight.to(target.dtype))


# --------------------------------------------------------------------------- layouts


def _children_by_role(parent_path: str, names: dict[str, nn.Module], role: str) -> list[str]:
    prefix = f"{parent_path}." if parent_path else ""
    return [f"{prefix}{n}" for n in ROLE_NAMES[role] if f"{prefix}{n}" in names]


def _parents(linears: dict[str, nn.Module]) -> list[str]:
    return sorted({name.rpartition(".")[0] for name in linears}, key=lambda p: (p.count("."), p))


@dataclass(frozen=True)
class MlpLayout:
    """Where a block keeps its MLP channels (paths relative to the block).

    Channel ``c`` is output row ``c`` of every producer (rows ``c`` and ``width + c`` of a fused
    ``[gate; up]`` producer) and input column ``c`` of the consumer.
    """

    producers: tuple[str, ...]  #: linears whose output rows are the channels
    consumer: str  #: the linear whose input columns are the channels
    fused: tuple[str, ...] = ()  #: producers among ``producers`` whose rows are ``[gate; up]``

    def rows(self, producer: str, channels: torch.Tensor, width: int) -> torch.Tensor:
        """Output rows of ``producer`` that belong to ``channels``."""
        return torch.cat([channels, channels + width]) if producer in self.fused else channels


def mlp_layout(block: nn.Module) -> MlpLayout:
    """The block's MLP layout, or :class:`UnsupportedModelError` naming what is missing.

    A consumer is a linear named as one (``down_proj``, ``fc2`` ...) whose siblings include
    producers (``up_proj``, ``fc1`` ... or a fused ``gate_up_proj``) whose output width matches
    its input width. Mixture-of-experts blocks have no single MLP and raise.
    """
    units = block_linears(block)
    names = {n: m for n, m in units.items() if not isinstance(m, ExpertWeight)}
    for parent in _parents(names):
        for consumer in _children_by_role(parent, names, "mlp_consumer"):
            width = weight_matrix(names[consumer]).shape[1]
            plain = [p for p in _children_by_role(parent, names, "mlp_producer")
                     if weight_matrix(names[p]).shape[0] == width]
            fused = [p for p in _children_by_role(parent, names, "mlp_fused_producer")
                     if weight_matrix(names[p]).shape[0] == 2 * width]
            if plain or fused:
                return MlpLayout(tuple(plain + fused), consumer, tuple(fused))
    if len(names) < len(units) or any(hasattr(m, "experts") for m in block.modules()):
        raise UnsupportedModelError("structured MLP pruning of mixture-of-experts blocks is not supported "
                                    "(each expert is its own MLP)")
    raise UnsupportedModelError(
        "no MLP found in the block: need a consumer linear named one of "
        f"{ROLE_NAMES['mlp_consumer']} and, beside it, producers named one of "
        f"{ROLE_NAMES['mlp_producer'] + ROLE_NAMES['mlp_fused_producer']} with matching widths; "
        f"the block has {sorted(names)}"
    )


def mlp_width_key(config, width: int) -> str:
    """The config field that holds the MLP width ``width`` (``intermediate_size``, ``ffn_dim`` ...).

    GPT-2 keeps ``n_inner=None`` for the default ``4 * hidden``; that field is the one to set."""
    for key in MLP_WIDTH_KEYS:
        if getattr(config, key, None) == width:
            return key
    for key in MLP_WIDTH_KEYS:
        if hasattr(config, key) and getattr(config, key) is None:
            return key
    raise UnsupportedModelError(f"no config field among {MLP_WIDTH_KEYS} holds the MLP width {width}")


@dataclass(frozen=True)
class AttentionLayout:
    """The attention projections of a block (paths relative to the block) and its head geometry."""

    module: str  #: path of the attention module
    query: str
    key: str
    value: str
    output: str
    heads: int
    kv_heads: int
    head_dim: int


def attention_layout(block: nn.Module, config) -> AttentionLayout:
    """Separate q/k/v projections and an output projection, with head counts from ``config``;
    :class:`UnsupportedModelError` names what is missing (a fused qkv, no head geometry ...)."""
    names = {n: m for n, m in block_linears(block).items() if not isinstance(m, ExpertWeight)}
    for parent in _parents(names):
        found = {role: _children_by_role(parent, names, role) for role in ("query", "key", "value", "attention_output")}
        if all(found.values()):  # head counts come from the weights (pruned blocks are narrower than the config)
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            q_rows = weight_matrix(names[found["query"][0]]).shape[0]
            if q_rows % head_dim:
                raise UnsupportedModelError(f"q projection has {q_rows} rows, not a multiple of head_dim {head_dim}")
            heads = q_rows // head_dim
            kv = weight_matrix(names[found["key"][0]]).shape[0] // head_dim
            return AttentionLayout(parent, found["query"][0], found["key"][0], found["value"][0],
                                   found["attention_output"][0], heads, kv, head_dim)
        fused = _children_by_role(parent, names, "fused_qkv")
        if fused:
            raise UnsupportedModelError(
                f"attention in '{parent}' uses a fused projection '{fused[0]}'; head pruning needs separate "
                f"{ROLE_NAMES['query'] + ROLE_NAMES['key'] + ROLE_NAMES['value']}"
            )
    raise UnsupportedModelError(f"no attention projections named {ROLE_NAMES['query']}/{ROLE_NAMES['key']}/"
                                f"{ROLE_NAMES['value']} found in the block; it has {sorted(names)}")
