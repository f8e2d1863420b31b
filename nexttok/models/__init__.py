"""Build a model from a run config."""
from __future__ import annotations

from ..config import RunConfig
from .gpt import GPT, GPTConfig


def build_model(cfg: RunConfig, vocab_size: int, block_size: int):
    """The model a run config names; `layers` and `dim` size both kinds (`heads` only the GPT)."""
    if cfg.model == "gpt":
        return GPT(GPTConfig(vocab_size, block_size, n_layer=cfg.layers, n_head=cfg.heads, n_embd=cfg.dim))
    if cfg.model == "mamba":
        from .mamba import MambaLM, MambaLMConfig

        return MambaLM(MambaLMConfig(vocab_size, block_size, n_layer=cfg.layers, d_model=cfg.dim))
    raise ValueError(f"unknown model {cfg.model!r}")
