"""The recipe: the training settings a run leaves unset (None), from its shape, model and objective.

`recipe(cfg)` reads RULES top to bottom; every row whose condition holds sets its settings, so a later, narrower
row overrides an earlier one. The measurements behind each row (commands, seeds, committed runs) are in
nexttok/results/recipe.md; a value the user sets always wins.
"""
from __future__ import annotations

RULES = [
    # every model: batch 256 of fresh graphs, 100 warm-up steps
    (lambda c: True, {"batch_size": 256, "warmup": 100, "n_train": 0}),
    # the GPT from scratch: 2 x 96 with rotary positions (the look-ups come in a third of learned positions' steps)
    (lambda c: c.model == "gpt", {"layers": 2, "dim": 96, "heads": 6, "positions": "rope"}),
    # by degree, the lr that fits the cheat and learns reverse on most seeds, and the steps that cover them
    (lambda c: c.deg <= 2, {"lr": 3e-3, "steps": 600}),
    (lambda c: c.deg == 3, {"lr": 1e-3, "steps": 1200}),
    (lambda c: c.deg >= 4, {"lr": 2e-3, "steps": 3000}),
    # l = 3 over more than 20 labels: the one look-up takes twice the steps at degrees 2 and 3
    (lambda c: c.deg == 2 and c.path_len == 3 and c.num_nodes > 20, {"steps": 1200}),
    (lambda c: c.deg == 3 and c.path_len == 3 and c.num_nodes > 20, {"steps": 2400}),
    # one position's loss alone at degree 3 reaches a guess among the source's children only late
    (lambda c: c.only_position and c.deg == 3, {"steps": 3000}),
    # Mamba: its own size, batch and lr (at the GPT's it had barely moved after 2000 steps)
    (lambda c: c.model == "mamba", {"layers": 2, "dim": 64, "batch_size": 128, "lr": 6e-3, "steps": 1500}),
    # the objectives' own settings
    (lambda c: c.mode == "mtp", {"mtp_heads": 2}),
    (lambda c: c.mode == "dropout", {"input_dropout": 0.5}),
    (lambda c: c.mode == "hybrid", {"hybrid_fraction": 0.5}),
    (lambda c: c.mode == "diffusion", {"diffusion_weight": "token", "diffusion_schedule": "uniform"}),
    # masked diffusion sits at the guess for thousands of steps and learns G(2,5) late: at 600 steps it ends at the
    # guess; at 8,000 steps 2 layers learned on some seeds (a longer schedule, 10,000, on none by its end) and a third
    # layer moved every seed off the guess (learned on one seed of four), within 30 minutes a run on the CPU
    (lambda c: c.mode == "diffusion" and c.model == "gpt" and c.deg <= 2, {"layers": 3, "steps": 8_000}),
    # ... on a fixed set of 50,000 graphs, as its papers train, seen 41 times each, with MaskGIT's cosine masking
    # rate (each lever alone learned the seed that fresh graphs had stalled on; the fixed set alone learned on two
    # seeds of three, both together on three of four), in half an hour a run on the CPU
    (lambda c: c.mode == "diffusion" and c.model == "gpt" and c.deg <= 2, {"diffusion_schedule": "cosine"}),
    (lambda c: c.mode == "diffusion" and c.model == "gpt" and c.deg <= 2 and not c.train_file, {"n_train": 50_000}),
    # the Belief State Transformer fits the cheat at the book's model and leaves the arm choice at a guess; on fresh
    # graphs (each seen once, as its reference trains; on the fixed set above it memorised) a third layer per encoder
    # learned on one seed of four in 8,000 steps, and a fourth, which its forward state needs to walk back from the
    # goal in one pass, on three seeds of five in 6,000 steps (about the same half hour a run on the CPU), with these
    # default flags on one of the two seeds run so
    (lambda c: c.mode == "bst" and c.model == "gpt" and c.deg <= 2, {"layers": 4, "steps": 6_000}),
]

# Where the recipe's budget is measured short before a run starts (only when the user leaves steps to the recipe).
KNOWN_SHORT = [
    (lambda c: c.only_position and c.model != "mamba" and c.deg >= 4,
     "at degree 4 a run on one position alone is not learned in twice the recipe's steps"),
    (lambda c: c.only_position and c.model != "mamba" and c.deg == 3 and c.path_len >= 6,
     "at degree 3 from l = 6 on a run on one position alone ends below a guess among the source's children"),
]

# What to try when a run at the recipe's settings is under-trained for a claim, by model and degree.
FIXES = [
    (lambda model, deg: True, "raise steps (or set lr)"),
    (lambda model, deg: model == "gpt" and deg == 3,
     "some seeds sit on a plateau that more steps at lr 1e-3 do not leave: set lr 2e-3 and steps 3000 "
     "(papermill -p lr 2e-3 -p steps 3000), or try another seed"),
    (lambda model, deg: model == "gpt" and deg >= 4,
     "some seeds sit on a plateau that twice the steps do not leave: try another seed first, then lr 1e-3"),
]

# The paper's scale: the authors' GPT and data at their lr and batch, for 20,000 steps; needs a GPU.
PAPER_SCALE = {"num_nodes": 50, "layers": 6, "dim": 384, "heads": 6, "positions": "learned", "lr": 1e-4,
               "batch_size": 256, "n_train": 200_000, "n_test": 20_000, "steps": 20_000, "warmup": 500}


def recipe(cfg) -> dict:
    """The recipe's value of every setting that applies to cfg's shape, model and objective."""
    out = {}
    for applies, settings in RULES:
        if applies(cfg):
            out.update(settings)
    return out


def known_short(cfg) -> str | None:
    """Why the recipe's budget is known not to reach what cfg needs (None: nothing known, or steps set)."""
    if cfg.steps is not None:
        return None
    return next((f"{why} (nexttok/results/recipe.md)" for applies, why in KNOWN_SHORT if applies(cfg)), None)


def under_trained_fix(deg: int, model: str = "gpt") -> str:
    """The fix a chapter names when a run at the recipe's settings is under-trained."""
    return next(fix for applies, fix in reversed(FIXES) if applies(model, deg)) + " (nexttok/results/recipe.md)"
