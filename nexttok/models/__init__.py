"""Build a model from a run config."""
from __future__ import annotations

from ..config import RunConfig
from .gpt import GPT, GPTConfig


def build_model(cfg: RunConfig, vocab_size: int, block_size: int):
    if cfg.model == "gpt":
        return GPT(GPTConfig(vocab_size, block_size, n_layer=cfg.layers, n_head=cfg.heads, n_embd=cfg.dim))
    raise ValueError(f"unknown model {cfg.model!r}")
