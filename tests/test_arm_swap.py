"""scripts/arm_swap.py: the arm-swap intervention on a sweep's forward runs, as a table with its provenance."""
import json

import pytest

from nexttok.records import read_table

from conftest import load_script

arm_swap = load_script("arm_swap")

TINY = {"deg": 2, "path_len": 4, "num_nodes": 12, "layers": 1, "dim": 16, "heads": 2, "steps": 4, "batch_size": 16,
        "n_test": 32, "eval_every": 2}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt", "mamba"])
def test_one_row_per_forward_run_with_the_committed_accuracy_beside_it(tmp_path, model, capsys):
    sweep = tmp_path / "tiny.json"
    sweep.write_text(json.dumps({"base": {**TINY, "model": model}, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1]}}))
    out = tmp_path / "swap.csv"
    assert arm_swap.main([str(sweep), "--runs", str(tmp_path / "runs"), "--out", str(out), "--quiet"]) == 0
    rows = read_table(out)
    assert [(r["model"], r["seed"]) for r in rows] == [(model, 0), (model, 1)]  # the forward runs only
    for r in rows:
        assert 0 <= r["follows_swapped_arm"] <= 1 and 0 <= r["stays_on_goal_arm"] <= 1
        assert r["follows_swapped_arm"] + r["stays_on_goal_arm"] <= 1  # one prediction, at most one of the two
        assert r["committed_gen_accuracy"] is None  # nothing of this sweep is committed
        assert r["commit"] and r["date"] and r["command"].startswith("python scripts/arm_swap.py")
    assert len(list((tmp_path / "runs").glob("forward-*/checkpoint.pt"))) == 2  # trained into the cache, kept

    assert arm_swap.main([str(sweep), "--runs", str(tmp_path / "runs"), "--out", str(out), "--where", "mode=reverse"]) == 2
    assert "no forward run with mode=reverse" in capsys.readouterr().err


def test_the_committed_runs_of_a_named_sweep_are_found_by_key():
    """A named sweep's committed forward runs stand beside the rows (the Mamba chapter checks they agree)."""
    from nexttok.chapter import committed_runs
    from nexttok.sweep import load_sweep, select

    forward = select(load_sweep("mamba"), ["mode=forward", "deg=2"])
    committed = {r.key for r in committed_runs("mamba")}
    assert forward and {c.key() for c in forward} <= committed
