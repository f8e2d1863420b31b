"""The networks, and the one function that builds the model a run config names."""
from __future__ import annotations

import contextlib

from .belief_state import BeliefStateTransformer
from .gpt import GPT, GPTConfig
from .mamba import MambaLM, MambaLMConfig
from .multi_token import MultiTokenGPT
from .pretrained import PRETRAINED, load_pretrained
from ..tokens import Vocab

MODELS = ("gpt", "mamba", *PRETRAINED)


def gpt_config(cfg, vocab_size: int, block_size: int) -> GPTConfig:
    return GPTConfig(vocab_size, block_size, n_layer=cfg.layers, n_head=cfg.heads, n_embd=cfg.dim, positions=cfg.positions)


@contextlib.contextmanager
def eval_mode(model):
    """The model in eval mode for the block (dropout off), then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def build_model(cfg, vocab_size: int, block_size: int):
    """The model a (resolved) run config names; `layers` and `dim` size both kinds (`heads` only the GPT); a
    pretrained model comes with its own size."""
    if cfg.model == "gpt":
        return GPT(gpt_config(cfg, vocab_size, block_size))
    if cfg.model == "mamba":
        return MambaLM(MambaLMConfig(vocab_size, block_size, n_layer=cfg.layers, d_model=cfg.dim))
    if cfg.model in PRETRAINED:  # its own size and tokenizer: layers, dim and heads do not apply
        return load_pretrained(cfg.model, cfg.weights, Vocab(vocab_size - 4), block_size)  # size = num_nodes + 4
    raise ValueError(f"unknown model {cfg.model!r}")


__all__ = ["GPT", "GPTConfig", "MambaLM", "MambaLMConfig", "MultiTokenGPT", "BeliefStateTransformer", "PRETRAINED",
           "MODELS", "build_model", "eval_mode", "gpt_config"]
