"""The Belief State Transformer objective (Hu et al. 2025).

Write the sequence as the prefix, the target y_1..y_l and an end marker y_{l+1} ("$"). For every pair of a
forward state f_a (it has read the prefix and y_1..y_a, a = 0..l-1) and a backward state b_c (it has read
y_c..y_{l+1} from the end, c = 2..l+1) with c - a >= 2, the head predicts y_{a+1}, the token after the
forward state, and y_{c-1}, the token before the backward state. Neither side has seen the token it is asked
for. The loss is half the sum of the two cross-entropies, averaged over pairs: l(l+1)/2 pairs a graph.
The pair (a, l+1) is the one decoding uses: after y_a, with nothing known of the future.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import BeliefStateTransformer, gpt_config
from ..tokens import prefix_len
from .next_token import Forward, make_view


def pairs(path_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c) for every pair with 0 <= a <= l-1, a + 2 <= c <= l + 1."""
    a, c = zip(*[(a, c) for a in range(path_len) for c in range(a + 2, path_len + 2)])
    return torch.tensor(a, device=device), torch.tensor(c, device=device)


class BeliefState(Forward):
    """Graded as forward teacher forcing through the next-token head (paired with the end marker's
    state), and decoded as the model would be used: forward, greedily, from the prefix."""

    name, models = "bst", ("gpt",)

    def build(self, cfg, vocab, task):
        return BeliefStateTransformer(gpt_config(cfg, vocab.size, self.input_len(task)), task.path_len)

    def backward_inputs(self, targets: torch.Tensor, vocab) -> torch.Tensor:
        """(n, l): the end marker, then y_l, y_{l-1}, ..., y_2: what the backward encoder reads, in order."""
        end = torch.full_like(targets[:, :1], vocab.dummy)
        return torch.cat([end, targets[:, 1:].flip(1)], dim=1)

    def pair_predictions(self, model, graphs, vocab):
        """Every pair's logits and the tokens they are asked for: ((next, prev) logits (n, pairs, V) and
        (next, prev) targets (n, pairs)), the pairs in the order of `pairs`."""
        inputs, targets = make_view(graphs, vocab, "forward")
        l = targets.shape[1]
        # f[:, a]: has read the prefix and y_1..y_a; b[:, j]: has read y_l back to y_{l+1-j}
        f = model.forward_encoder.features(inputs, n_out=l)
        b = model.backward_encoder.features(self.backward_inputs(targets, vocab))
        a, c = pairs(l, targets.device)
        # each pair predicts y_{a+1} after the prefix and y_{c-1} before the suffix
        return model.pair_logits(f[:, a], b[:, l + 1 - c]), (targets[:, a], targets[:, c - 2])

    def loss(self, model, graphs, vocab, generator=None):
        (nxt, prev), (want_next, want_prev) = self.pair_predictions(model, graphs, vocab)
        loss_next = F.cross_entropy(nxt.flatten(0, 1).float(), want_next.flatten())
        loss_prev = F.cross_entropy(prev.flatten(0, 1).float(), want_prev.flatten())
        return (loss_next + loss_prev) / 2

    @torch.no_grad()
    def pair_losses(self, model, graphs, vocab) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-entropy of each pair's two predictions, each a mean over the graphs: (next, prev), each
        (pairs,). Which of its l(l+1) predictions a model has fit and which it still guesses."""
        (nxt, prev), (want_next, want_prev) = self.pair_predictions(model, graphs, vocab)
        return tuple(F.cross_entropy(logits.transpose(1, 2).float(), want, reduction="none").mean(0)
                     for logits, want in ((nxt, want_next), (prev, want_prev)))

    def graded(self, model, graphs, vocab):
        inputs, targets = make_view(graphs, vocab, "forward")
        return model(inputs, n_out=targets.shape[1], end_token=vocab.dummy), targets

    def decode(self, model, graphs, vocab):
        inputs, targets = make_view(graphs, vocab, "forward")
        prefix = inputs[:, : prefix_len(graphs.edges.shape[1])]
        return model.generate(prefix, targets.shape[1], end_token=vocab.dummy)
