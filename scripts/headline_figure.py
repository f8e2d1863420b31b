"""The introduction's headline figure, from the committed seeds of the headline (nexttok/results/
headline_seeds.csv): no training, no network. Run it after a new headline sweep and commit the image:

    python scripts/headline_figure.py  # writes book/figures/headline.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nexttok.chapter import committed_runs, frame  # noqa: E402
from nexttok.plots import MODE_COLOURS, position_colour  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "book" / "figures" / "headline.png"


def jitter(n: int, width: float = 0.24):
    """Evenly spread x offsets, so that seeds at the same value stay visible side by side."""
    return np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(n)


def main(out: Path = OUT) -> Path:
    table = frame(committed_runs("headline_seeds.csv"))
    rope = table[table["positions"] == "rope"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1.3, 1]})
    forward = rope[rope["mode"] == "forward"]
    path_len = int(forward["path_len"].iloc[0])
    ax = axes[0]
    for i in range(1, path_len + 1):
        values = forward[f"tf_token_accuracy_{i}"]
        ax.scatter(i + jitter(len(values)), values, color=position_colour(i), s=36, alpha=0.8, zorder=3)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(1, path_len + 1), [f"{i}" + (" (arm\nchoice)" if i == 2 else "") for i in
                                           range(1, path_len + 1)])
    ax.set_xlabel("target position")
    ax.set_ylabel("teacher-forced accuracy")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title("(a) forward training fits every token\nbut the arm choice", fontsize=10)
    ax = axes[1]
    modes = ["forward", "reverse"]
    for k, mode in enumerate(modes):
        values = rope[rope["mode"] == mode]["gen_accuracy"]
        ax.scatter(k + jitter(len(values)), values, color=MODE_COLOURS[mode], s=36, alpha=0.8, zorder=3)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="1/d: a random arm")
    ax.set_xticks(range(len(modes)), ["forward\n(next token)", "reverse\n(next token)"])
    ax.set_xlim(-0.6, len(modes) - 0.4)
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("generation accuracy (held out)")
    ax.set_title("(b) so it writes a random arm;\nthe reversed path is learned", fontsize=10)
    ax.legend(loc="lower center", fontsize=8, frameon=False)
    for a in axes:
        a.grid(axis="y", alpha=0.3)
    fig.suptitle(f"G(2,{path_len}), N={int(forward['num_nodes'].iloc[0])}, GPT "
                 f"{int(forward['layers'].iloc[0])}x{int(forward['dim'].iloc[0])}: one point per seed "
                 f"({forward['seed'].nunique()} seeds, committed runs)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
