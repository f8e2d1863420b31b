"""The book's figures. Every function returns its Axes (or Figure) so a chapter can add to it; every
title carries the scale and config the numbers came from."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import networkx as nx
import seaborn as sns

from .config import RunConfig
from .graphs import Graphs
from .models import PRETRAINED
from .resolve import resolve

# One colour per target position, the same in every figure of the book: position 2, the arm choice, in red;
# the copies of the query (1, the source; l, the goal) in greys would vary with l, so each index keeps its own.
POSITION_COLOURS = ["#4d4d4d", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
# One colour per objective, the same in every figure: forward next-token training and its reversal stand apart.
MODE_COLOURS = {"forward": "#d62728", "reverse": "#1f77b4", "teacherless": "#2ca02c", "dropout": "#9467bd",
                "multi_token": "#ff7f0e", "diffusion": "#8c564b", "bst": "#17becf"}


def position_colour(position: int) -> str:
    """The book's colour for target position `position` (1-based)."""
    return POSITION_COLOURS[(position - 1) % len(POSITION_COLOURS)]


def mode_colour(label: str) -> str | None:
    """The book's colour for the objective a curve's label starts with (None: matplotlib's next colour)."""
    return next((c for m, c in MODE_COLOURS.items() if label.split()[0:1] == [m]), None)


def scale_label(cfg: RunConfig) -> str:
    """The scale a figure's numbers come from: task, model, budget, data and seed."""
    cfg = resolve(cfg)
    data = f"{cfg.n_train} train graphs" if cfg.n_train else "fresh graphs each step"
    graded = f"; loss on position {cfg.only_position} only" if cfg.only_position else ""
    # a pretrained model has its own size: name where its weights came from instead
    model = f"{cfg.model} from {cfg.weights or 'the hub'}" if cfg.model in PRETRAINED else f"{cfg.model} {cfg.layers}x{cfg.dim}"
    return (f"G({cfg.deg},{cfg.path_len}), N={cfg.num_nodes}; {model}; "
            f"batch {cfg.batch_size}, lr {cfg.lr:g}, {cfg.steps} steps; {data}{graded}; seed {cfg.seed}")


def draw_graph(graphs: Graphs, index: int = 0, ax=None):
    """One path-star graph: the source at the centre, one arm per ray, the answer arm in orange."""
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    g = nx.DiGraph()
    g.add_edges_from(map(tuple, graphs.edges[index].tolist()))
    source, goal = int(graphs.source[index]), int(graphs.goal[index])
    answer = set(graphs.path[index].tolist())
    arms = graphs.arms[index].tolist()
    pos = {node: (step * math.cos(2 * math.pi * k / len(arms)), step * math.sin(2 * math.pi * k / len(arms)))
           for k, arm in enumerate(arms) for step, node in enumerate(arm)}
    colours = ["tab:green" if n == source else "tab:red" if n == goal else "tab:orange" if n in answer else "tab:blue"
               for n in g.nodes]
    nx.draw_networkx(g, pos, ax=ax, node_color=colours, font_color="white", node_size=500, arrowsize=12)
    ax.set_title(f"a G({len(arms)},{len(arms[0])}) graph: source {source} (green), goal {goal} (red), "
                 "answer arm in orange", fontsize=9)
    ax.set_axis_off()
    return ax


def plot_curves(histories: dict[str, list[dict]], metric: str = "gen_accuracy", chance: float | None = None,
                title: str = "", ax=None):
    """One metric over training steps, one line per run."""
    sns.set_theme(style="whitegrid")
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    for label, history in histories.items():
        ax.plot(history["step"], history[metric], marker="o", label=label, color=mode_colour(label))
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", label=f"chance 1/d = {chance:.2f}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return ax


def plot_positions(history: list[dict], prefix: str = "tf_token_accuracy", title: str = "", ax=None, log: bool = False):
    """A per-position metric (accuracy, loss, gradient norm) over training, one line per target position
    (in forward order position 2 is the arm choice). Accuracies share a 0..1 axis; log=True for losses
    and gradient norms, which span orders of magnitude."""
    sns.set_theme(style="whitegrid")
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    values = history[prefix]
    for i in range(1, values.shape[1] + 1):
        ax.plot(history["step"], values[:, i - 1], marker="o", color=position_colour(i), label=f"position {i}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(prefix.replace("_", " "))
    if log:
        ax.set_yscale("log")
    elif "accuracy" in prefix:
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    # beside the axes, never over a curve
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return ax
