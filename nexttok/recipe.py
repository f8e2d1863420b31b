"""The recipe: the training settings a run uses where its config leaves them unset (None).

One function, `recipe(cfg)`, maps the task's shape, the model and the objective to the model size, the
learning rate and the budget. The CLI, the sweeps, the notebooks and the Makefile all reach it through
`RunConfig.resolved()`, and a value the user sets always wins. The rule and the runs it was measured on
are in `book/recipe.md`.
"""
from __future__ import annotations

# the fields a recipe sets (the RunConfig fields that default to None for it)
RECIPE_FIELDS = ("layers", "dim", "heads", "positions", "steps", "batch_size", "lr", "warmup", "mtp_heads", "input_dropout")


def recipe(cfg) -> dict:
    """The recipe's value of every field in RECIPE_FIELDS that applies to cfg's model and mode."""
    if cfg.model == "mamba":
        # at the GPT's width 96 and batch 256 a Mamba step costs 8x a GPT step on a CPU; at the GPT's lr a
        # reversed Mamba run had barely moved after 2000 steps
        out = {"layers": 2, "dim": 64, "batch_size": 128, "lr": 6e-3, "steps": 1500, "warmup": 100}
    else:
        # a pretrained model brings its own size: layers, dim and heads are the GPT's only
        out = {"layers": 2, "dim": 96, "heads": 6, "positions": "rope"} if cfg.model == "gpt" else {}
        out.update({"batch_size": 256, "warmup": 100})
        out.update({"lr": 3e-3, "steps": 600} if cfg.deg <= 2 else {"lr": 1e-3, "steps": 2000})
    if cfg.mode == "mtp":
        out["mtp_heads"] = 2
    if cfg.mode == "dropout":
        out["input_dropout"] = 0.5
    return out
