"""Masked diffusion over the target (Ye et al. 2024; Kitouni et al. 2024's MLM-U is of the same family).

The model reads the whole sequence, prefix and target, with no causal mask. For each training sequence a
rate r is drawn (`diffusion_schedule`: "uniform", r from U(0, 1]; or "cosine", MaskGIT's r = cos(pi u / 2) with u
from U[0, 1), which masks more: a mean rate of 2/pi); each target token is replaced by the mask token ("$") with probability r, and
the loss is the cross-entropy at the masked positions, averaged over every masked token of the batch (as
MLM-U; `diffusion_weight="token"`), or each sequence's summed over its masked tokens and weighted by 1/(r l)
(`"elbo"`: the weighting of the diffusion ELBO, as Ye et al.; r is floored at 1/l in the weight, so a
sequence with one masked token never counts for more than the whole target). The prefix is never masked.

Decoding starts from an all-masked target and, over l steps, commits the one masked position the model is
most sure of (highest probability of its best token), then predicts again with that token in place.
The graded view is the first of those steps: every target position masked, one pass (at r = 1 the
objective is teacherless training with bidirectional attention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tokens import prefix_len
from .base import Objective


WEIGHTS = ("token", "elbo")
SCHEDULES = ("uniform", "cosine")


class MaskedDiffusion(Objective):
    name, models, fields = "diffusion", ("gpt",), ("diffusion_weight", "diffusion_schedule")

    def input_len(self, task):
        return prefix_len(task.num_edges) + task.path_len  # the whole sequence: nothing is shifted

    def masked(self, seq: torch.Tensor, mask: torch.Tensor, vocab) -> torch.Tensor:
        """seq with the target tokens where mask (n, l) is True replaced by the mask token."""
        l = mask.shape[1]
        out = seq.clone()
        out[:, -l:] = torch.where(mask, torch.full_like(mask, vocab.dummy, dtype=seq.dtype), seq[:, -l:])
        return out

    def loss(self, model, graphs, vocab, generator=None):
        seq = self.sequence(graphs, vocab)
        n, l = seq.shape[0], graphs.path.shape[1]
        u = torch.rand(n, 1, generator=generator, device=seq.device)
        cosine = self.cfg.diffusion_schedule == "cosine"
        rate = torch.cos(u * torch.pi / 2) if cosine else 1 - u  # in (0, 1]
        mask = torch.rand(n, l, generator=generator, device=seq.device) < rate
        logits = model(self.masked(seq, mask, vocab), n_out=l, causal=False).float()
        target = seq[:, -l:]
        if self.cfg.diffusion_weight == "elbo":  # each sequence's masked tokens weighted 1/r
            per_token = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            return ((per_token * mask).sum(1) / (rate[:, 0].clamp(min=1 / l) * l)).mean()
        if not mask.any():  # nothing masked in the whole batch: a zero loss that keeps the graph
            return logits.sum() * 0
        return F.cross_entropy(logits[mask], target[mask])

    def graded(self, model, graphs, vocab):
        seq = self.sequence(graphs, vocab)
        l = graphs.path.shape[1]
        everything = torch.ones(seq.shape[0], l, dtype=torch.bool, device=seq.device)
        return model(self.masked(seq, everything, vocab), n_out=l, causal=False), seq[:, -l:]

    @torch.no_grad()
    def decode(self, model, graphs, vocab):
        seq = self.sequence(graphs, vocab)
        n, l = seq.shape[0], graphs.path.shape[1]
        rows = torch.arange(n, device=seq.device)
        mask = torch.ones(n, l, dtype=torch.bool, device=seq.device)
        x = self.masked(seq, mask, vocab)
        for _ in range(l):
            probs = model(x, n_out=l, causal=False).float().softmax(-1)
            confidence, best = probs.max(-1)
            pos = confidence.masked_fill(~mask, -1.0).argmax(-1)  # the surest still-masked position
            x[rows, x.shape[1] - l + pos] = best[rows, pos]
            mask[rows, pos] = False
        return x[:, -l:]
