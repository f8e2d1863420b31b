"""A GPT with k output heads for multi-token prediction (Gloeckle et al. 2024).

The trunk is the GPT's first n_layer - 1 blocks. Head 1 is the GPT's last block, so the model *is* a GPT
for next-token use (forward, generate, the key/value cache); heads 2..k are further blocks of the same shape
that read the trunk's output. Every head ends in the GPT's final LayerNorm and its tied unembedding.
"""
from __future__ import annotations

import math

import torch.nn as nn

from .gpt import GPT, Block, GPTConfig


class MultiTokenGPT(GPT):
    def __init__(self, cfg: GPTConfig, n_heads: int):
        if cfg.n_layer < 2:
            raise ValueError("multi-token prediction needs at least 2 layers: a trunk and a head block")
        super().__init__(cfg)
        self.n_heads = n_heads
        self.extra_heads = nn.ModuleList(Block(cfg, cfg.n_layer - 1) for _ in range(n_heads - 1))
        for block in self.extra_heads:
            block.apply(self._init)
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def all_heads(self, idx, n_out: int):
        """Every head's logits (B, n_out, V) at the last n_out positions, head 1 first."""
        x, rotary = self.embed(idx)
        for block in self.blocks[:-1]:
            x = block(x, rotary)
        heads = [self.blocks[-1], *self.extra_heads]
        return [self.unembed(self.ln_f(head(x, rotary, n_queries=n_out))) for head in heads]
