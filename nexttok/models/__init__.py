"""Build a model from a run config."""
from __future__ import annotations

from ..config import PRETRAINED, RunConfig
from .gpt import GPT, GPTConfig


def build_model(cfg: RunConfig, vocab_size: int, block_size: int):
    """The model a run config names; `layers` and `dim` size both kinds (`heads` only the GPT); a pretrained
    model comes with its own size."""
    if cfg.model == "gpt":
        return GPT(GPTConfig(vocab_size, block_size, n_layer=cfg.layers, n_head=cfg.heads, n_embd=cfg.dim))
    if cfg.model == "mamba":
        from .mamba import MambaLM, MambaLMConfig

        return MambaLM(MambaLMConfig(vocab_size, block_size, n_layer=cfg.layers, d_model=cfg.dim))
    if cfg.model in PRETRAINED:  # its own size and tokenizer: layers, dim and heads do not apply
        from ..tokens import Vocab
        from .pretrained import load_pretrained

        return load_pretrained(cfg.model, cfg.weights, Vocab(vocab_size - 4), block_size)  # size = num_nodes + 4
    raise ValueError(f"unknown model {cfg.model!r}")
