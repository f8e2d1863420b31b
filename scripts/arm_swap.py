#!/usr/bin/env python3
"""The arm-swap intervention on every forward run of a sweep, written as a results table:

    python scripts/arm_swap.py SWEEP --runs FOLDER --out TABLE.csv [--where FIELD=VALUE ...]

Each forward run of the sweep comes from the run cache FOLDER (`nexttok sweep SWEEP --out F` trains them into
F/runs and keeps their checkpoints), or is trained there when it is missing. The model is handed the first node
of a wrong arm at target position 2 (nexttok.mechanisms.follow_other_arm): one that looks up "the child of the
node just given" continues the wrong arm. One row per run: how often it followed the wrong arm and how often it
went back to the goal's, its gen_accuracy beside that of the committed run of the same key (the run it
reproduces; empty where none is committed), and how the row was made. Exit 2 names a bad argument.
"""
from __future__ import annotations

import sys
from pathlib import Path

from nexttok.chapter import committed_runs
from nexttok.graphs import TaskError
from nexttok.mechanisms import follow_other_arm
from nexttok.runs import get_run, load_trained
from nexttok.sweep import NAMED, load_sweep, probe_main, select


def arm_swap_rows(sweep: str, runs: Path, where: list[str], progress: bool = True) -> list[dict]:
    configs = [c for c in select(load_sweep(sweep), where) if c.mode == "forward"]
    if not configs:
        raise TaskError(f"{sweep}: no forward run{' with ' + ' '.join(where) if where else ''} to intervene on")
    # a named sweep's committed runs (its folder or its table in nexttok/results); a sweep file has none
    committed = {r.key: r for name in (sweep, f"{sweep}.csv") for r in committed_runs(name)} if sweep in NAMED else {}
    rows = []
    for cfg in configs:
        run = get_run(cfg, runs, progress=progress)
        trained = load_trained(run.folder)
        probe = follow_other_arm(trained.model, trained.test, trained.vocab)
        theirs = committed.get(run.key)
        rows.append({"key": run.key, "model": cfg.model, "deg": cfg.deg, "path_len": cfg.path_len, "seed": cfg.seed,
                     **probe, "gen_accuracy": run.metrics["gen_accuracy"],
                     "committed_gen_accuracy": theirs.metrics["gen_accuracy"] if theirs else None})
        print(f"{cfg.model} G({cfg.deg},{cfg.path_len}) seed {cfg.seed}: follows the swapped arm "
              f"{probe['follows_swapped_arm']:.3f}, back to the goal's arm {probe['stays_on_goal_arm']:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    return probe_main("arm_swap", __doc__, arm_swap_rows, argv)


if __name__ == "__main__":
    sys.exit(main())
