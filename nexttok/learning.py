"""What learning cost a run, read off its history: the samples, FLOPs and seconds it took to reach a level, and the
order in which it learned the target's positions. A run's history is evaluated every `eval_every` steps, so each
figure is the first evaluation at or past the level (an upper bound, within one interval of the true step)."""
from __future__ import annotations

import dataclasses

import numpy as np

from .config import RUN_ONLY, RunConfig
from .evaluate import LEARNED
from .records import RunRecord


def cost_to_learn(run: RunRecord, flops_per_sample: float | None = None, step_ms: float | None = None,
                  level: float = LEARNED) -> dict:
    """Steps, training samples, FLOPs (with the objective's FLOPs per sample) and seconds (at a measured step time)
    until held-out generation first reached `level`; None where it never did."""
    step = run.history.first_step("gen_accuracy", level)
    samples = step * run.config.batch_size if step is not None else None
    return {"steps": step, "samples": samples,
            "flops": samples * flops_per_sample if samples is not None and flops_per_sample else None,
            "seconds": step * step_ms / 1000 if step is not None and step_ms else None}


def learned_at(run: RunRecord, metric: str = "tf_token_accuracy", level: float = LEARNED) -> dict[int, int | None]:
    """Per target position (1-based), the step of the first evaluation at which `metric` reached `level` there
    (None: never)."""
    return {i: run.history.first_step(metric, level, positions=[i]) for i in range(1, run.config.path_len + 1)}


def right_to_left(run: RunRecord, metric: str = "tf_token_accuracy", level: float = LEARNED) -> bool | None:
    """Whether the hidden positions 2..l-1 that the run learned were learned from the goal back: each no earlier than
    the one after it, and none learned while a later one was not. None where fewer than two were learned (nothing
    to order)."""
    steps = [learned_at(run, metric, level)[i] for i in range(2, run.config.path_len)]
    if sum(s is not None for s in steps) < 2:
        return None
    never = np.inf
    order = [never if s is None else s for s in steps]
    return all(a >= b for a, b in zip(order, order[1:]))


# fields that change what is recorded about a run or where it runs, not what it learns: those left out of the key,
# and how often and on how many graphs it is evaluated, and the precision a device picks
BOOKKEEPING = RUN_ONLY + ("eval_every", "n_eval", "precision")


def levers(cfg: RunConfig, reference: RunConfig) -> dict:
    """The settings in which a run differs from a reference run (bookkeeping aside), with the run's values: the levers
    it moved."""
    # compared as config.json holds them, where a field that does not apply (None) and its omitted default are the
    # same: a run read back from its folder has diffusion_weight "token" whatever its objective, its recipe None
    mine, theirs = cfg.to_dict(), reference.to_dict()
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in BOOKKEEPING and mine.get(k) != theirs.get(k)}
