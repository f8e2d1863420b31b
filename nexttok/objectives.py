"""The training objectives: what the model reads, and which of its predictions are graded.

All three modes train the same cross-entropy on the l target positions only (the prefix is given,
never predicted: its positions are cut out of the loss). They differ in the input:
- forward:     teacher forcing. Input at target position i is the true token i: the model may look
               up "the child of the token I was just given" (the Clever-Hans cheat).
- reverse:     teacher forcing on the path written goal -> source: every step is a unique-parent look-up.
- teacherless: the inputs at target positions are all "$", so each target token must be predicted
               from the prefix alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .graphs import Graphs
from .tokens import Vocab, encode, prefix_len

MODES = ("forward", "reverse", "teacherless")


def make_view(graphs: Graphs, vocab: Vocab, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets): inputs (n, prefix_len + l - 1); targets (n, l), the tokens the last l
    outputs must predict (target order: reversed in reverse mode)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    seq = encode(graphs, vocab, reverse=mode == "reverse")
    path_len = graphs.path.shape[1]
    inputs = seq[:, :-1]
    if mode == "teacherless":
        inputs = inputs.clone()
        inputs[:, prefix_len(graphs.edges.shape[1]) :] = vocab.dummy
    return inputs, seq[:, -path_len:]


def target_loss(logits: torch.Tensor, targets: torch.Tensor, only_position: int = 0) -> torch.Tensor:
    """Mean cross-entropy over the target positions; logits (n, l, V) are the last l outputs.
    only_position=i (1-based) grades target position i alone, the others get no gradient."""
    if only_position:
        logits, targets = logits[:, only_position - 1 : only_position], targets[:, only_position - 1 : only_position]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def position_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(l,) mean cross-entropy at each target position."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none").mean(0)
