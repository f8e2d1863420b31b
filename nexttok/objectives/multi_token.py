"""Multi-token prediction (Gloeckle et al. 2024): a shared trunk with k output heads; head j predicts the
token j places ahead. The loss is the mean of the k heads' cross-entropies on the target tokens; the
model decodes with head 1 alone, which is the GPT's own last block, so generation is next-token decoding.

Head j at input position t predicts sequence token t + j, so target token i is predicted by head j from the
input position i - j places before the position that holds target token i - 1 for head 1: it sees the
prefix and target tokens 1..i-j, never token i or what follows.
"""
from __future__ import annotations

import torch

from ..models import MultiTokenGPT, gpt_config
from .base import target_loss
from .next_token import Forward, make_view


class MultiToken(Forward):
    name, models, fields = "mtp", ("gpt",), ("mtp_heads",)

    def build(self, cfg, vocab, task):
        return MultiTokenGPT(gpt_config(cfg, vocab.size, self.input_len(task)), cfg.mtp_heads)

    def head_logits(self, model, inputs: torch.Tensor, path_len: int) -> list[torch.Tensor]:
        """Head j's logits (n, l, V) for the l target tokens, j = 1..k."""
        k = model.n_heads
        window = model.all_heads(inputs, n_out=path_len + k - 1)  # k tensors (n, l + k - 1, V)
        # head j reads the position j - 1 places before head 1's: window index (k - j) + (i - 1)
        return [window[j - 1][:, k - j : k - j + path_len] for j in range(1, k + 1)]

    def loss(self, model, graphs, vocab, generator=None):
        inputs, targets = make_view(graphs, vocab, "forward")
        heads = self.head_logits(model, inputs, targets.shape[1])
        losses = [target_loss(h, targets, self.cfg.only_position) for h in heads]
        return torch.stack(losses).mean()
