#!/usr/bin/env python3
"""What each Belief State Transformer run of a sweep has fit, prediction by prediction, as a results table:

    python scripts/bst_pairs.py SWEEP --runs FOLDER --out TABLE.csv [--where FIELD=VALUE ...]

Each BST run of the sweep comes from the run cache FOLDER (`nexttok sweep SWEEP --out F` trains them into F/runs
and keeps their checkpoints), or is trained there when it is missing. Its objective pairs every forward state a
(it has read the prefix and target tokens 1..a) with every backward state c (it has read tokens c..l and the end
marker), and asks each pair for token a+1 (next) and token c-1 (prev). One row per run and prediction: the
held-out cross-entropy on the run's test graphs (nexttok.mechanisms.belief_state_predictions), the run's
gen_accuracy, and how the row was made. Exit 2 names a bad argument.
"""
from __future__ import annotations

import sys
from pathlib import Path

from nexttok.graphs import TaskError
from nexttok.mechanisms import belief_state_predictions
from nexttok.runs import get_run, load_trained
from nexttok.sweep import load_sweep, probe_main, select

CHUNK = 512  # test graphs a forward pass: the pair head's logits are (graphs, pairs, vocab)


def pair_rows(sweep: str, runs: Path, where: list[str], progress: bool = True) -> list[dict]:
    configs = [c for c in select(load_sweep(sweep), where) if c.mode == "bst"]
    if not configs:
        raise TaskError(f"{sweep}: no bst run{' with ' + ' '.join(where) if where else ''} to read")
    rows = []
    for cfg in configs:
        run = get_run(cfg, runs, progress=progress)
        trained = load_trained(run.folder)
        predictions = belief_state_predictions(trained.model, trained.objective, trained.test, trained.vocab, CHUNK)
        rows += [{"key": run.key, "layers": cfg.layers, "n_train": cfg.n_train, "seed": cfg.seed, "steps": cfg.steps,
                  **p, "gen_accuracy": run.metrics["gen_accuracy"]} for p in predictions]
        print(f"bst {cfg.layers} layers, n_train {cfg.n_train}, seed {cfg.seed}: mean loss a prediction "
              f"{sum(p['loss'] for p in predictions) / len(predictions):.4f}", flush=True)
    return rows


def main(argv=None) -> int:
    return probe_main("bst_pairs", __doc__, pair_rows, argv)


if __name__ == "__main__":
    sys.exit(main())
