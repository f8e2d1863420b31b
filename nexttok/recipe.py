"""The recipe: the training settings a run uses where its config leaves them unset (None).

One function, `recipe(cfg)`, maps the task's shape, the model and the objective to the model size, the
learning rate and the budget. The CLI, the sweeps, the notebooks and the Makefile all reach it through
`RunConfig.resolved()`, and a value the user sets always wins. Each rule says what it was measured on.
"""
from __future__ import annotations

# the fields a recipe sets (the RunConfig fields that default to None for it)
RECIPE_FIELDS = ("layers", "dim", "heads", "positions", "steps", "batch_size", "lr", "warmup", "mtp_heads", "input_dropout",
                 "hybrid_fraction")

# The paper's scale: the authors' GPT (6 layers x 384, 6 heads, learned positions) and data (200,000 training and
# 20,000 test graphs over 50 labels) at their lr 1e-4 and batch 256, for 20,000 steps (25 epochs; their epoch count
# is not given). Needs a GPU. A chapter's `scale = "paper"` and the named sweep `paper` both take it from here.
PAPER_SCALE = {"num_nodes": 50, "layers": 6, "dim": 384, "heads": 6, "positions": "learned", "lr": 1e-4,
               "batch_size": 256, "n_train": 200_000, "n_test": 20_000, "steps": 20_000, "warmup": 500}


def gpt_budget(deg: int, path_len: int, num_nodes: int) -> dict:
    """The GPT's learning rate and steps by degree (and at l = 3 by the number of labels), measured on seed 0 of
    each shape of the grid (first evaluation, every 50 steps, at which reverse generation reached 0.95 / forward
    teacher-forced positions 3..l reached 0.95):
    - degree 2, lr 3e-3: reverse 150-300, forward 150 (l = 3..6, N = 20 and 50, but G(2,3) with N = 50: below):
      600 steps. At lr 2e-3 reverse took 175-200 steps, at 4e-3 150-175 (seeds 0-4, l = 5): 3e-3 is the fastest.
      G(2,4), G(2,5) and G(2,6) with N = 50 held every chapter's claims at 600 steps (seed 0, scripts/run_shapes.py).
      G(2,3) with more than 20 labels gets 1200: at N = 50 and 600 steps position 2 trained alone (the
      indecipherable chapter's run) ended at loss 0.87, 0.88 and 0.89 on seeds 0-2, above a guess between the
      source's 2 children (ln 2 = 0.69; accuracy 0.55-0.57), and reverse at 0.81, 1.00 and 1.00; at 1200 steps
      position 2 alone reached 0.92, 0.93 and 0.86 (loss 0.23, 0.23 and 0.37), reverse 0.95, 1.00 and 1.00 (seed
      0 first at 0.95 at step 1100), and forward 0.92, 0.91 and 0.89, below 0.95 as the forward chapters claim at
      l = 3, if not by much. (`nexttok train --deg 2 --path-len 3 --num-nodes 50 [--only-position 2]
      --mode reverse|forward --seed S --steps 600|1200 --eval-every 50`.) N from 21 to 49, and above 50, is not
      measured.
    - degree 3: at lr 3e-3 reverse G(3,3) never left 1/3 in 1500 steps and forward G(3,4) had not fit the cheat; at lr
      1e-3 reverse took 300-450 steps and forward 200-400 (l = 3 and 5 with N = 20, l = 5 with N = 50): 1200 steps,
      and at l = 3 with more than 20 labels 2400 (below). Over the whole grid (l = 3..6, seeds 0-2, results/grid.csv)
      that budget is short on 4 of 24 runs: forward G(3,4) seeds 0 and 2 and G(3,5) seed 2 had not fit the cheat
      (positions 3..l at 0.10-0.40, flat from step 500 on G(3,4) seed 0), and reverse G(3,6) seed 0 was at 0.935,
      still rising (0.82 at step 650). More steps at 1e-3 do not fix the plateau (forward G(3,4) seed 0: position 3 at
      0.33 after 3000 steps); lr 2e-3 fixes them: forward G(3,4) seeds 0 and 2 fit by steps 1000 and 1250 of 3000,
      G(3,5) seed 2 by step 500 of 1200, reverse G(3,3) seed 0 learned by step 500 of 1200 and reverse G(3,6) seed 0
      by step 1000 of 3000. But over the grid lr 2e-3 for 3000 steps is no better: on its first 16 runs (l = 3 and 4
      on seeds 0-2, l = 5 forward on seeds 0-2 and reverse on seed 0; `nexttok sweep grid` at commit 0208a01, 2.2
      core-hours) it fit the three forward runs above that 1e-3 had not (G(3,4) seeds 0 and 2, G(3,5) seed 2) and
      failed three others that 1e-3 had fit or learned: reverse G(3,3) seed 2 (0.33, on the arm choice's plateau from
      step 350 to 3000), forward G(3,4) seed 1 (position 3 at 0.80) and G(3,5) seed 1 (0.01). At either lr some seed
      of a cell sits on a plateau, and which one moves with the lr: the lr does not fix degree 3, and 1200 steps at
      1e-3 cost 2.5x less. Forward G(3,3) seed 2 stays at chance at both (0.35, 0.33). Width does more than the lr,
      but not everywhere: at 2 layers x 192 (lr 1e-3, 1200 steps, evaluated every 100; single runs) forward G(3,3)
      seed 2 learns the arm choice on 0.82 of graphs, forward G(3,4) seed 0 and G(3,5) seed 2 fit the cheat by step
      400, and reverse G(3,6) seed 0 is at 0.99 from step 200; forward G(3,4) seed 2 does not (position 3 at 0.18-0.23
      from step 400 on). Over the grid's l = 3 (seeds 0-2, a sweep file of the grid's degree-3 configs with dim 192,
      at commit 02e8876) forward reaches 0.92, 0.93 and 0.82, but reverse, which the 96-wide model learns on every
      seed, stops at 0.67, 0.82 and 0.73: at l = 3 both directions need the same look-up (the goal's parent), and at
      width 192 neither finishes it in 1200 steps. A step costs about 1.5x. G(3,3) with more than 20 labels gets 2400:
      at N = 50 and 1200 steps reverse seed 0 was still climbing (0.30 at step 650, 0.85 at the end) and the reverse
      and grid chapters stopped on their preconditions (scripts/run_shapes.py); at 2400 steps reverse reached 0.95 by
      step 900, 700 and 1050 (seeds 0-2, 1.00 at the end) and forward ended at 0.65, 0.34 and 0.34, below 0.95 as the
      forward chapters claim at l = 3 (`nexttok train --deg 3 --path-len 3 --num-nodes 50 --mode forward|reverse
      --seed S --steps 2400 --eval-every 50`). N from 21 to 49, and above 50, is not measured; a run on one position
      alone gets 3000 steps at degree 3 anyway (`recipe`).
    - degree 4: no lr found fits every shape; 2e-3 fits the most, 3000 steps (checked every 250 steps, N = 20,
      25 for G(4,6)). At lr 2e-3 reverse G(4,4) reached 0.95 by step 500 and reverse G(4,6) by 1500 (seed 0); forward
      fit the cheat (positions 3..l at 0.95, generation at 1/d) on G(4,4) seeds 0 and 1 (steps 1250-1500 and 1000)
      and G(4,5) seed 0 (1500), but not on G(4,4) seed 2 or G(4,6) seed 0 in 3000 steps. At lr 1e-3 forward G(4,4)
      seed 0 had not fit it after 3000 steps; G(4,5) seed 0 had, by step 2000 (G(4,6) by step 600 of a 2000-step
      schedule, after which reverse G(4,6) was at 0.92); at 3e-3 forward G(4,4) seed 0 had not either. Where the
      cheat is not fit, a forward chapter stops on its precondition (under-trained: raise steps, or set lr). Over
      the grid's l = 3..5 on seeds 0-2 (`nexttok sweep grid --where deg=4`, commit 6bebd01, 18 runs, 7-15 minutes
      each on one thread): forward fit the cheat on 8 of 9 runs (not G(4,4) seed 2: positions 2 and 3 at 0.12 and
      0.14) and reverse learned 7 of 9: reverse G(4,3) seed 0 sat at 1/4 for all 3000 steps (seeds 1 and 2 learned
      by step 650) and reverse G(4,5) seed 1 ended at 0.06 (positions 2-4 at 0.40-0.43). At l = 6 (N = 25, 18-20
      minutes a run) forward seed 0 fit the cheat (where the single run above, evaluated every 250 steps, had not)
      and sits at 0.26, seeds 1 and 2 have not (positions 2-5 at 0.06-0.08); reverse seed 0 learned (1.0 by step
      1750), seed 1 only at the end (0.00 until step 2200, 0.13 at 2700, 0.99 at 3000) and seed 2 not (0.00, its
      positions 2-5 at 0.06-0.07 throughout): G(4,6) is at the edge of this budget in both directions. More steps
      do not move every plateau: reverse G(4,6) seed 2 at 6000 steps (`nexttok train ... --seed 2 --steps 6000`,
      74 minutes on one thread beside other runs) ended at 0.00, positions 2-5 still at 0.06-0.08.
      With 50 labels degree 4 keeps 3000 steps at l = 3, where degrees 2 and 3 needed twice theirs: reverse G(4,3)
      with N = 50 reached 0.95 at step 1000 (seed 2) and 2750 (seed 1), and seed 0, on the plateau at 1/4 where it
      sat with N = 20, ended at 0.27 after 3000 steps and 0.61 after 6000 (`nexttok train --deg 4 --path-len 3
      --num-nodes 50 --mode reverse --seed S [--steps 6000] --eval-every 50`; 9 and 18 minutes on one thread): twice
      the steps does not take it off."""
    if deg <= 2:
        budget = {"lr": 3e-3, "steps": 600}
    elif deg == 3:
        budget = {"lr": 1e-3, "steps": 1200}
    else:
        budget = {"lr": 2e-3, "steps": 3000}
    if deg <= 3 and path_len == 3 and num_nodes > 20:
        budget["steps"] *= 2  # one look-up to learn over more labels: measured short at N = 50 on degrees 2 and 3
    return budget


def known_short(cfg) -> str | None:
    """What the measurements say the recipe's budget does not reach for `cfg`, known before it trains (None: nothing
    known). Only where the user left steps to the recipe: a value the user sets is theirs to try.
    - A GPT run on one position alone at degree 4: position 2 alone was at 0.08 after 6000 steps at lr 2e-3 (G(4,5),
      seed 0, flat at 0.05-0.10 throughout; 43 minutes on one thread beside two other runs).
    - The same at degree 3 from l = 6 on: on G(3,6) position 2 alone was at 0.10 after the recipe's 3000 steps (seed 0,
      train loss 2.58 against 1.10 for a guess among the source's 3 children; 15 minutes on one thread), where on
      G(3,4) and G(3,5) it reached that guess (0.33, and 0.30-0.34 from step 1750)."""
    if cfg.steps is not None or cfg.model == "mamba" or not cfg.only_position:
        return None
    if cfg.deg >= 4:
        return (f"at degree {cfg.deg} a run on position {cfg.only_position} alone is not learned in the recipe's "
                "budget: on G(4,5) position 2 alone was at 0.08 after 6000 steps, twice the recipe's 3000 "
                "(nexttok.recipe)")
    if cfg.deg == 3 and cfg.path_len >= 6:
        return (f"at degree 3 and l = {cfg.path_len} a run on position {cfg.only_position} alone is not learned in the "
                "recipe's budget: on G(3,6) position 2 alone was at 0.10 after its 3000 steps, below a guess among the "
                "source's 3 children (nexttok.recipe)")
    return None


def under_trained_fix(deg: int, model: str = "gpt") -> str:
    """What to try when a run at the recipe's budget is under-trained: the fix a chapter's precondition names, from
    the measurements in `gpt_budget`. At degree 3 more steps at the recipe's lr do not move a run off its plateau
    (forward G(3,4) seed 0: position 3 at 0.33 after 3000 steps), so the fix there is another lr or seed."""
    if model == "gpt" and deg == 3:
        return ("at degree 3 some seeds sit on a plateau that more steps at the recipe's lr 1e-3 do not leave; set "
                "lr 2e-3 and steps 3000 (papermill -p lr 2e-3 -p steps 3000; it fit or learned every run that 1e-3 "
                "left on one in the committed grid, and leaves other seeds on one), or try another seed "
                "(nexttok.recipe)")
    if model == "gpt" and deg >= 4:
        return (f"at degree {deg} the recipe's 3000 steps at lr 2e-3 leave some seeds on a plateau (G(4,4) seed 2 "
                "and G(4,6) seeds 1 and 2 forward, G(4,3) seed 0, G(4,5) seed 1 and G(4,6) seed 2 reversed); try "
                "another seed (reverse G(4,3) learned on seeds 1 and 2), or set lr 1e-3 (forward G(4,5) seed 0 fit by "
                "step 2000 there), or raise steps (twice the steps left reverse G(4,6) seed 2 where it was) "
                "(nexttok.recipe)")
    return "raise steps (or set lr), or see the recipe (nexttok.recipe)"


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
        out.update(gpt_budget(cfg.deg, cfg.path_len, cfg.num_nodes))
        if cfg.only_position and cfg.deg == 3:
            # one position's loss alone: at degree 3 position 2 alone was at 0.15 after 1200 steps and reached a
            # guess among the source's children (1/3) from step 1750 on (0.30-0.34 to step 3000; G(3,5), seed 0,
            # checked every 250 steps). At degree 2 the 600 steps suffice (the committed indecipherable runs). At
            # degree 4 no budget measured suffices, so it keeps 3000 and `known_short` refuses it before it trains.
            out["steps"] = 3000
    if cfg.mode == "mtp":
        out["mtp_heads"] = 2
    if cfg.mode == "dropout":
        out["input_dropout"] = 0.5
    if cfg.mode == "hybrid":
        out["hybrid_fraction"] = 0.5
    return out
