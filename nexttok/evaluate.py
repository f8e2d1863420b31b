"""Evaluation, batched on the device. The metric names are the CLI contract (the book's glossary defines
them):

- tf_loss, tf_token_accuracy, tf_token_loss: the model on its objective's own graded view (teacher-forced for
  forward and reverse, "$" inputs for teacherless, every target token masked for diffusion, ...); accuracy
  and loss per target position.
- gen_accuracy, gen_token_accuracy: the model decoding alone from the prefix, by its objective's own
  decoding (greedy with a KV cache for the next-token objectives; one pass for teacherless; l unmasking
  steps for diffusion); whole-path and per-position accuracy.
- first_decision_accuracy: generated accuracy at target position 2, the first token the prefix does
  not give away (in forward order: which arm to take).
- on_some_arm: fraction of generated paths that are some arm of the graph, source to leaf (a forward
  model that picks the wrong arm but follows it perfectly still counts).
All positions are in target order (goal first for reverse).
"""
from __future__ import annotations

import torch

from .graphs import Graphs
from .models import eval_mode
from .objectives import Objective, position_losses
from .tokens import Vocab

# the accuracy at which the book calls a run learned (gen_accuracy) and a target position fit (tf_token_accuracy)
LEARNED = 0.95


@torch.inference_mode()
def evaluate(model, objective: Objective, graphs: Graphs, vocab: Vocab, batch_size: int = 1024) -> dict:
    loss_sum, tf_hits, gen_hits, whole, on_arm = 0, 0, 0, 0, 0
    with eval_mode(model):
        for start in range(0, len(graphs), batch_size):
            part = graphs[start : start + batch_size]
            logits, targets, decoded = objective.predict(model, part, vocab)
            loss_sum = loss_sum + position_losses(logits, targets).double() * len(part)
            tf_hits = tf_hits + (logits.argmax(-1) == targets).sum(0)
            correct = decoded == targets
            gen_hits = gen_hits + correct.sum(0)
            whole += int(correct.all(1).sum())
            forward_order = decoded.flip(1) if objective.reverse else decoded
            on_arm += int((forward_order[:, None, :] == part.arms).all(-1).any(-1).sum())
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
