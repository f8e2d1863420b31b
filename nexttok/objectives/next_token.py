"""Next-token objectives: the paper's three, and token dropout between two of them.

All of them train the same cross-entropy on the l target positions only (the prefix is given, never
predicted: its positions are cut out of the loss). They differ in the input:
- forward:     teacher forcing. Input at target position i is the true token i: the model may look
               up "the child of the token I was just given" (the Clever-Hans cheat).
- reverse:     teacher forcing on the path written goal -> source: every step is a unique-parent look-up.
- teacherless: the inputs at target positions are all "$", so each target token must be predicted
               from the prefix alone.
- dropout:     teacher forcing where each target-side input is replaced by "$" with probability p
               (Frydenlund 2025's token dropout): p = 0 is forward, p = 1 is teacherless.
- hybrid:      teacherless training beside teacher forcing (Nagarajan et al. 2025): every graph of the batch
               teacher-forced, and a fraction of them again as teacherless copies.
"""
from __future__ import annotations

import torch

from ..graphs import Graphs
from ..tokens import Vocab, encode, prefix_len
from .base import Objective, target_loss

VIEWS = ("forward", "reverse", "teacherless")


def make_view(graphs: Graphs, vocab: Vocab,
              mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): inputs (n, prefix_len + l - 1); targets (n, l), the tokens the
    last l outputs must predict (target order: reversed in reverse mode)."""
    if mode not in VIEWS:
        raise ValueError(f"unknown view {mode!r}; choose from {', '.join(VIEWS)}")
    seq = encode(graphs, vocab, reverse=mode == "reverse")
    path_len = graphs.path.shape[1]
    inputs = seq[:, :-1]
    if mode == "teacherless":
        inputs = inputs.clone()
        inputs[:, prefix_len(graphs.edges.shape[1]) :] = vocab.dummy
    return inputs, seq[:, -path_len:]


class NextToken(Objective):
    """A next-token objective on one of the three views; it decodes greedily, one token at a time."""

    view = "forward"

    def inputs(self, graphs: Graphs, vocab: Vocab, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training inputs and targets (the graded view, unless the objective perturbs it)."""
        return make_view(graphs, vocab, self.view)

    def loss(self, model, graphs, vocab, generator=None):
        inputs, targets = self.inputs(graphs, vocab, generator)
        logits = model(inputs, n_out=targets.shape[1])
        return target_loss(logits, targets, self.cfg.only_position)

    def graded(self, model, graphs, vocab):
        inputs, targets = make_view(graphs, vocab, self.view)
        return model(inputs, n_out=targets.shape[1]), targets

    def decode(self, model, graphs, vocab):
        inputs, targets = make_view(graphs, vocab, self.view)
        return model.generate(inputs[:, : prefix_len(graphs.edges.shape[1])], targets.shape[1])


class Forward(NextToken):
    name = "forward"


class Reverse(NextToken):
    name, view, reverse = "reverse", "reverse", True


class Teacherless(NextToken):
    """No token is fed back, so the training view is also how it decodes: one forward pass."""

    name, view = "teacherless", "teacherless"

    def decode(self, model, graphs, vocab):
        return self.graded(model, graphs, vocab)[0].argmax(-1)

    def predict(self, model, graphs, vocab):
        logits, targets = self.graded(model, graphs, vocab)
        return logits, targets, logits.argmax(-1)


class TokenDropout(NextToken):
    """Forward teacher forcing where each input at a target position (target tokens 1..l-1 fed back) is
    replaced by "$" with probability `input_dropout`, drawn anew for every token of every batch. Graded
    and decoded as forward: the dropout is a training-time corruption only."""

    name, fields = "dropout", ("input_dropout",)

    def inputs(self, graphs, vocab, generator):
        inputs, targets = make_view(graphs, vocab, "forward")
        start = prefix_len(graphs.edges.shape[1])
        fed = inputs[:, start:]
        draw = torch.rand(fed.shape, generator=generator, device=fed.device)
        drop = draw < self.cfg.input_dropout
        inputs = inputs.clone()
        inputs[:, start:] = torch.where(drop, torch.full_like(fed, vocab.dummy), fed)
        return inputs, targets


class Hybrid(Teacherless):
    """The batch's graphs teacher-forced, and the first `hybrid_fraction` of them again with "$" inputs (the
    teacherless view), in one mean cross-entropy over every target token of both. The teacher-forced sequences
    teach the edge look-ups early (the cheat is one of them); the teacherless copies ask for the plan, which
    is what is graded and decoded: it is a teacherless model with a scaffold."""

    name, fields = "hybrid", ("hybrid_fraction",)

    def loss(self, model, graphs, vocab, generator=None):
        forced, targets = make_view(graphs, vocab, "forward")
        copies = max(1, round(self.cfg.hybrid_fraction * len(graphs)))
        blank = make_view(graphs[:copies], vocab, "teacherless")[0]
        logits = model(torch.cat([forced, blank]), n_out=targets.shape[1])
        both = torch.cat([targets, targets[:copies]])
        return target_loss(logits, both, self.cfg.only_position)
