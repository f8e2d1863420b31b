"""The Belief State Transformer (Hu et al. 2025): a forward and a backward encoder and one head on both.

- The forward encoder is a GPT over the prefix and the target, read left to right: its state f_t has seen
  the sequence up to token t.
- The backward encoder is a GPT of the same shape over the target read from its end, after an end marker
  (here "$"): its state b_u has seen the target from token u to the end. The two share token embeddings.
- The head reads [f_t ; b_u] through a residual MLP and a LayerNorm, splits the result in two halves, and
  maps each through the shared (tied) unembedding: the first half predicts the token after t, the second
  the token before u.
Decoding runs the forward encoder alone, token by token with its key/value cache, and pairs each f_t with
the backward state of the lone end marker: "nothing is known of the future".
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .gpt import GPT, GPTConfig, decode_with_cache


class BeliefStateTransformer(nn.Module):
    def __init__(self, cfg: GPTConfig, suffix_len: int):
        super().__init__()
        C = cfg.n_embd
        self.forward_encoder = GPT(cfg)
        self.backward_encoder = GPT(GPTConfig(cfg.vocab_size, suffix_len, cfg.n_layer, cfg.n_head, C, cfg.positions))
        self.backward_encoder.wte = self.forward_encoder.wte  # shared token embeddings
        self.head = nn.Sequential(nn.Linear(2 * C, 4 * C), nn.GELU(), nn.Linear(4 * C, 2 * C))
        self.head_norm = nn.LayerNorm(2 * C)
        self.head.apply(GPT._init)

    def pair_logits(self, f: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(next-token logits, previous-token logits) for forward states f and backward states b (..., C)."""
        x = torch.cat([f, b], dim=-1)
        x = self.head_norm(x + self.head(x))
        nxt, prev = x.chunk(2, dim=-1)
        unembed = self.forward_encoder.unembed
        return unembed(nxt), unembed(prev)

    def end_state(self, batch: int, end_token: int, device) -> torch.Tensor:
        """(batch, 1, C): the backward encoder's state after reading only the end marker."""
        return self.backward_encoder.features(torch.full((batch, 1), end_token, device=device))

    def forward(self, idx, n_out: int | None = None, end_token: int | None = None):
        """Next-token logits of the last n_out positions of idx, each paired with the end marker's state."""
        f = self.forward_encoder.features(idx, n_out)
        return self.pair_logits(f, self.end_state(idx.shape[0], end_token, idx.device).expand_as(f))[0]

    @torch.no_grad()
    def generate(self, prefix, n_new: int, end_token: int, temperature: float = 0.0, generator=None):
        b = self.end_state(prefix.shape[0], end_token, prefix.device)[:, 0]
        step = lambda x, cache: self.pair_logits(self.forward_encoder.features(x, 1, cache)[:, -1], b)[0]  # noqa: E731
        return decode_with_cache(self.forward_encoder, step, prefix, n_new, temperature, generator)
