"""Probes of the two mechanisms. The Clever-Hans cheat in a trained forward model: where it looks, and
what it does when the previous token is swapped for a node of another arm. The indecipherable token:
how much gradient each target position's loss sends into the weights. And which of its predictions a Belief
State Transformer has fit."""
from __future__ import annotations

import math

import torch

from .graphs import Graphs
from .models import eval_mode
from .objectives import Objective, make_view, position_losses
from .objectives.belief_state import pairs
from .tokens import Vocab, prefix_len


@torch.no_grad()
def attention_weights(model, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's causal attention weights (n, heads, T, T) when the GPT `model`
    reads `inputs`.

    A forward hook on each attention module recomputes its softmax from the input the
    module saw, so the model itself keeps no probe state and runs its fused kernel as in
    training."""
    weights = []

    def record(attn, args, output):
        x, rotary = args[0], args[1]
        q, k, _ = attn.queries_keys_values(x, rotary)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        T = x.shape[1]
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        weights.append(scores.masked_fill(future, float("-inf")).softmax(-1))

    hooks = [block.attn.register_forward_hook(record) for block in model.blocks]
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return weights


@torch.no_grad()
def edge_attention(model, graphs: Graphs, vocab: Vocab) -> dict[str, torch.Tensor]:
    """Where the forward GPT `model` looks from the input position that holds the previous node v, at target
    positions 3..l (teacher forcing gives v; v has one child): `edge_mass` of its attention weights."""
    return edge_mass(attention_weights(model, make_view(graphs, vocab, "forward")[0]), graphs)


def edge_mass(weights: list[torch.Tensor], graphs: Graphs) -> dict[str, torch.Tensor]:
    """From each layer's attention weights (n, heads, T, T) on the forward view of
    `graphs`: per layer, head and offset o, the mean attention weight that the input
    position holding the previous node v puts on the prefix token at o from the start of
    the edge that *starts* at v (`outgoing`: the cheat's look-up) and of the edge that
    *ends* at v (`incoming`, for comparison), over target positions 3..l; `offsets`
    lists o, and `uniform` is what one token gets under uniform attention over the
    positions the query can see. An edge is three tokens `u v |`, offsets 0, 1, 2: its
    two nodes and the separator after it (`/` after the last edge), where an earlier
    layer can have gathered the pair. Offsets are relative because an earlier layer can
    as well have copied the pair to a token a fixed distance away, and a look-up by
    content then reads it there (the forward runs of G(3,6), seeds 0 and 1 of the
    committed grid, read six tokens on from the edge's start)."""
    P, l = prefix_len(graphs.edges.shape[1]), graphs.path.shape[1]
    offsets = torch.arange(-(P - 1), P)
    out = {"outgoing": 0.0, "incoming": 0.0}
    for i in range(3, l + 1):
        # target position i is predicted at input P + i - 2, which holds path[i-2]
        query, v = P + i - 2, graphs.path[:, i - 2, None]
        for name, end in (("outgoing", 0), ("incoming", 1)):
            # the edge v -> child (or parent -> v)
            start = 3 * (graphs.edges[:, :, end] == v).float().argmax(1)
            # (n, offsets); outside the prefix weighs nothing
            keys = start[:, None] + offsets[None, :]
            inside = ((keys >= 0) & (keys < P))[:, None, :]
            index = keys.clamp(0, P - 1)[:, None, :]
            # the same keys in every layer: (layers, heads, offsets)
            mass = torch.stack([
                (layer[:, :, query, :P].gather(2, index.expand(-1, layer.shape[1], -1))
                 * inside).mean(0)
                for layer in weights])
            out[name] = out[name] + mass / (l - 2)
    visible = torch.tensor([P + i - 1 for i in range(3, l + 1)], dtype=torch.float)
    return {**out, "offsets": offsets, "uniform": (1 / visible).mean()}


@torch.no_grad()
def follow_other_arm(model, graphs: Graphs, vocab: Vocab) -> dict:
    """Teacher-force the first node of a *wrong* arm at target position 2 and read the prediction for
    position 3: a model that looks up "the child of the previous token" follows the wrong arm."""
    inputs, targets = make_view(graphs, vocab, "forward")
    P = prefix_len(graphs.edges.shape[1])
    goal_arm = (graphs.path[:, None, :] == graphs.arms).all(-1).float().argmax(1)
    other = (goal_arm + 1) % graphs.arms.shape[1]
    rows = torch.arange(len(graphs))
    swapped = inputs.clone()
    swapped[:, P + 1] = graphs.arms[rows, other, 1]  # the input that stands for target position 2
    predicted = model(swapped, n_out=targets.shape[1])[:, 2].argmax(-1)  # the prediction for position 3
    return {
        "follows_swapped_arm": (predicted == graphs.arms[rows, other, 2]).float().mean().item(),
        "stays_on_goal_arm": (predicted == graphs.path[:, 2]).float().mean().item(),
    }


def position_gradient_norms(model, objective: Objective, graphs: Graphs, vocab: Vocab) -> list[float]:
    """For each target position i, the norm of the gradient of position i's loss (on the objective's graded
    view) with respect to all the weights: which positions are still teaching the model something.
    (torch.autograd.grad leaves the parameters' .grad, and so the training step, untouched.)"""
    params = [p for p in model.parameters() if p.requires_grad]
    losses = position_losses(*objective.graded(model, graphs, vocab))
    norms = []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1, allow_unused=True)
        norms.append(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)).item())
    return norms


def belief_state_predictions(model, objective, graphs: Graphs, vocab: Vocab, chunk: int = 512) -> list[dict]:
    """The held-out loss of each prediction of a Belief State Transformer: every pair of a forward state a (it has
    read target tokens 1..a) and a backward state c (tokens c..l) asks for token a+1 (next) and token c-1 (prev).
    One dict a prediction (a, c, predicts, position, loss), the loss a mean over `graphs`, `chunk` at a time."""
    a, c = pairs(graphs.path.shape[1])
    totals = torch.zeros(2, len(a))
    with eval_mode(model):
        for start in range(0, len(graphs), chunk):
            part = graphs[start:start + chunk]
            totals += torch.stack(objective.pair_losses(model, part, vocab)).cpu() * len(part)
    return [{"a": int(a[k]), "c": int(c[k]), "predicts": half, "position": int(position[k]),
             "loss": float(totals[i, k]) / len(graphs)}
            for i, (half, position) in enumerate((("next", a + 1), ("prev", c - 1))) for k in range(len(a))]
