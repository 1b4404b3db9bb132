"""Tiny random models of every supported family, built from configs (no download)."""

from __future__ import annotations

import torch
import transformers as T

VOCAB = 128
FAMILIES = ("llama", "mistral", "qwen2", "opt", "gpt2")


def tiny_config(family: str):
    """A two-block model of ``family`` small enough to run in milliseconds (no download)."""
    common = dict(vocab_size=VOCAB, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **common)
    return {
        "llama": lambda: T.LlamaConfig(**llama_like),
        "mistral": lambda: T.MistralConfig(sliding_window=16, **llama_like),
        "qwen2": lambda: T.Qwen2Config(**llama_like),
        "opt": lambda: T.OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, **common),
        "gpt2": lambda: T.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=0, eos_token_id=0),
    }[family]()


def tiny_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return T.AutoModelForCausalLM.from_config(tiny_config(family)).eval()
