"""Tiny random models of many decoder families, built from configs (no download).

Every family gets the same small geometry (hidden 32, 4 query heads of 8, 2 KV heads where the
family has grouped-query attention, MLP width 64, 2 blocks), set through the config's own field
names. A few configs make the blocks *differ* on purpose, because that is where a block-by-block
replay goes wrong: Gemma-2/3 alternate sliding and full attention, ``qwen2-mixed`` mixes
``layer_types``, and Mistral's sliding window (8) is shorter than the test sequences (32).
"""

from __future__ import annotations

import torch
import transformers as T

VOCAB = 128
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP = 32, 4, 2, 8, 64
BLOCKS = 2

#: the families prunelib is tested on (README's list comes from here)
FAMILIES = (
    "llama", "mistral", "qwen2", "qwen3", "opt", "gpt2", "gemma", "gemma2", "gemma3_text", "phi",
    "phi3", "gpt_neox", "falcon", "olmo2", "granite", "starcoder2", "mixtral", "qwen3_moe",
)
#: configs whose blocks are not alike (attention type or window differs between blocks)
HETEROGENEOUS = ("gemma2", "gemma3_text", "qwen2-mixed", "mistral")
MOE_FAMILIES = ("mixtral", "qwen3_moe")

_COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=BLOCKS, num_attention_heads=HEADS,
               max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=2)
_GQA = dict(num_key_value_heads=KV_HEADS, intermediate_size=MLP, head_dim=HEAD_DIM)
# three blocks where attention types alternate, so two blocks of one type share their mask
_SLIDING = dict(num_hidden_layers=3, sliding_window=8, layer_types=["sliding_attention", "full_attention", "sliding_attention"])

_OVERRIDES = {
    "llama": _GQA,
    "mistral": dict(_GQA, sliding_window=8),
    "qwen2": _GQA,
    "qwen2-mixed": dict(_GQA, use_sliding_window=True, sliding_window=8, max_window_layers=1, num_hidden_layers=3,
                        layer_types=["full_attention", "sliding_attention", "sliding_attention"]),
    "qwen3": _GQA,
    "opt": dict(ffn_dim=MLP, word_embed_proj_dim=HIDDEN),
    "gpt2": dict(n_inner=MLP),
    "gemma": _GQA,
    "gemma2": dict(_GQA, **_SLIDING),
    "gemma3_text": dict(_GQA, **_SLIDING, rope_local_base_freq=100.0),
    "phi": dict(num_key_value_heads=HEADS, intermediate_size=MLP),
    "phi3": dict(_GQA, pad_token_id=2),
    "gpt_neox": dict(intermediate_size=MLP),
    "falcon": dict(ffn_hidden_size=MLP, new_decoder_architecture=False, multi_query=True, parallel_attn=True),
    "olmo2": _GQA,
    "granite": _GQA,
    "starcoder2": dict(_GQA),
    "mixtral": dict(_GQA, num_local_experts=4, num_experts_per_tok=2),
    "qwen3_moe": dict(_GQA, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, decoder_sparse_step=1,
                      norm_topk_prob=True),
}


def tiny_config(family: str):
    """A small config of ``family`` (or of a variant such as ``qwen2-mixed``)."""
    model_type = family.split("-")[0]
    return T.AutoConfig.for_model(model_type, **{**_COMMON, **_OVERRIDES[family]})


def tiny_model(family: str, seed: int = 0, attention: str | None = None):
    """Random weights from ``seed``; ``attention`` picks the implementation (``"eager"``, ``"sdpa"``;
    transformers' default when ``None``)."""
    torch.manual_seed(seed)
    options = {"attn_implementation": attention} if attention else {}
    return T.AutoModelForCausalLM.from_config(tiny_config(family), **options).float().eval()

#: families whose blocks have one MLP to shrink (mixture-of-experts blocks have one per expert)
MLP_FAMILIES = tuple(f for f in FAMILIES if f not in MOE_FAMILIES)
#: families whose heads can be removed: separate q/k/v, a config head_dim, no norm across heads
HEAD_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "granite", "starcoder2",
                 "mixtral", "qwen3_moe")
#: the others, and the words of the error that says why not
NO_HEAD_PRUNING = {"opt": "head_dim", "phi": "head_dim", "gpt2": "fused", "phi3": "fused", "gpt_neox": "fused",
                   "falcon": "fused", "olmo2": "normalizes the queries"}
