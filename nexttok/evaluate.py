"""Evaluation, batched on the device. The metric names are the CLI contract (DESIGN.md):

- tf_loss, tf_token_accuracy, tf_token_loss: the model on its own training view (teacher-forced for
  forward and reverse, "$" inputs for teacherless); accuracy and loss per target position.
- gen_accuracy, gen_token_accuracy: the model decoding alone from the prefix (greedy, KV cache; for
  teacherless, one forward pass over the "$" inputs); whole-path and per-position accuracy.
- first_decision_accuracy: generated accuracy at target position 2, the first token the prefix does
  not give away (in forward mode: which arm to take).
- on_some_arm: fraction of generated paths that are some arm of the graph, source to leaf (a forward
  model that picks the wrong arm but follows it perfectly still counts).
All positions are in target order (goal first in reverse mode).
"""
from __future__ import annotations

import torch

from .graphs import Graphs
from .objectives import make_view, position_losses
from .tokens import Vocab, prefix_len


@torch.no_grad()
def predict(model, graphs: Graphs, vocab: Vocab, mode: str):
    """(logits on the training view (n, l, V), targets (n, l), decoded tokens (n, l))."""
    inputs, targets = make_view(graphs, vocab, mode)
    path_len = targets.shape[1]
    logits = model(inputs, n_out=path_len)
    if mode == "teacherless":
        decoded = logits.argmax(-1)  # no token is fed back: the training view is the decoding
    else:
        decoded = model.generate(inputs[:, : prefix_len(graphs.edges.shape[1])], path_len)
    return logits, targets, decoded


@torch.no_grad()
def evaluate(model, graphs: Graphs, vocab: Vocab, mode: str, batch_size: int = 1024) -> dict:
    was_training = model.training
    model.eval()
    loss_sum, tf_hits, gen_hits, whole, on_arm = 0, 0, 0, 0, 0
    for start in range(0, len(graphs), batch_size):
        part = graphs[start : start + batch_size]
        logits, targets, decoded = predict(model, part, vocab, mode)
        loss_sum = loss_sum + position_losses(logits, targets).double() * len(part)
        tf_hits = tf_hits + (logits.argmax(-1) == targets).sum(0)
        correct = decoded == targets
        gen_hits = gen_hits + correct.sum(0)
        whole += int(correct.all(1).sum())
        forward_order = decoded.flip(1) if mode == "reverse" else decoded
        on_arm += int((forward_order[:, None, :] == part.arms).all(-1).any(-1).sum())
    model.train(was_training)
    n = len(graphs)
    gen_token = (gen_hits.double() / n).tolist()
    return {
        "gen_accuracy": whole / n,
        "gen_token_accuracy": gen_token,
        "tf_token_accuracy": (tf_hits.double() / n).tolist(),
        "tf_loss": (loss_sum.mean() / n).item(),
        "tf_token_loss": (loss_sum / n).tolist(),
        "first_decision_accuracy": gen_token[1] if len(gen_token) > 1 else gen_token[0],
        "on_some_arm": on_arm / n,
    }
