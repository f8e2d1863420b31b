"""scripts/bst_pairs.py: each BST run's held-out loss, prediction by prediction, as a table with its provenance."""
import json

import pytest
import torch

from nexttok.config import RunConfig
from nexttok.records import read_table
from nexttok.resolve import resolve
from nexttok.runs import load_trained, run_dir

from conftest import load_script

bst_pairs = load_script("bst_pairs")

TINY = {"deg": 2, "path_len": 4, "num_nodes": 12, "layers": 1, "dim": 16, "heads": 2, "steps": 4, "batch_size": 16,
        "n_test": 40, "eval_every": 2}


def test_two_rows_per_pair_of_each_bst_run_with_its_provenance(tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "tiny.json"
    sweep.write_text(json.dumps({"base": TINY, "grid": {"mode": ["bst", "forward"], "seed": [0, 1]}}))
    out = tmp_path / "pairs.csv"
    monkeypatch.setattr(bst_pairs, "CHUNK", 16)  # 40 test graphs in three chunks, the last one short
    assert bst_pairs.main([str(sweep), "--runs", str(tmp_path / "runs"), "--out", str(out), "--quiet"]) == 0
    rows = read_table(out)
    l = TINY["path_len"]
    assert len(rows) == 2 * 2 * l * (l + 1) // 2  # the bst runs only: two seeds, two predictions a pair
    assert {r["seed"] for r in rows} == {0, 1}
    for r in rows:
        assert r["c"] - r["a"] >= 2 and r["position"] == (r["a"] + 1 if r["predicts"] == "next" else r["c"] - 1)
        assert r["loss"] > 0 and r["commit"] and r["date"] and r["command"].startswith("python scripts/bst_pairs.py")
    # the mean over its predictions is the run's objective on its test graphs, as training computes it
    run = load_trained(run_dir(resolve(RunConfig(**TINY, mode="bst", seed=0)), tmp_path / "runs"))
    run.model.eval()
    with torch.no_grad():
        whole = run.objective.loss(run.model, run.test, run.vocab).item()
    mine = [r["loss"] for r in rows if r["seed"] == 0]
    assert sum(mine) / len(mine) == pytest.approx(whole, rel=1e-4)

    forward_only = ["--where", "mode=forward"]
    assert bst_pairs.main([str(sweep), "--runs", str(tmp_path / "runs"), "--out", str(out), *forward_only]) == 2
    assert "no bst run with mode=forward" in capsys.readouterr().err
