"""Tables and provenance (nexttok.records): what a run and a sweep write, and how each was produced."""
import math
import sys

import torch

from nexttok.records import finite_json, flatten, read_table, write_table
from nexttok.records import RunRecord
from nexttok.train import train

from conftest import tiny_config


def test_tables_round_trip_with_numbers_parsed_back(tmp_path):
    rows = [flatten({"seed": 0, "acc": [0.5, 1.0], "mode": "forward"}), flatten({"seed": 1, "acc": [1.0, 1.0], "note": ""})]
    write_table(rows, tmp_path / "t.csv")
    back = read_table(tmp_path / "t.csv")
    assert back[0] == {"seed": 0, "acc_1": 0.5, "acc_2": 1.0, "mode": "forward", "note": None}
    assert back[1]["note"] is None and back[1]["mode"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left behind


def test_provenance_names_the_commit_a_run_started_from(tmp_path, monkeypatch):
    """The tree can change while a run trains (a commit, an edit): its provenance names the code it started with."""
    train_module = sys.modules["nexttok.train"]  # the module (nexttok.train is also the function's name)
    tree = {"commit": "abc123-at-start"}
    monkeypatch.setattr(train_module, "git_commit", lambda: tree["commit"])
    original = train_module._loop

    def loop(*args, **kwargs):
        original(*args, **kwargs)
        tree["commit"] = "def456-committed-meanwhile"

    monkeypatch.setattr(train_module, "_loop", loop)
    train(tiny_config(steps=2, eval_every=2), tmp_path / "run", progress=False)
    assert RunRecord.load(tmp_path / "run").provenance["commit"] == "abc123-at-start"


def test_non_finite_metrics_become_null():
    assert finite_json({"a": math.nan, "b": [1.0, math.inf], "c": "x"}) == {"a": None, "b": [1.0, None], "c": "x"}


def test_provenance_of_a_run_started_from_python(tmp_path):
    train(tiny_config(steps=2, eval_every=2), tmp_path / "run", progress=False)
    prov = RunRecord.load(tmp_path / "run").provenance
    assert prov["command"].startswith("nexttok train --path-len 4 --num-nodes 12 --layers 1 --dim 32")
    assert prov["torch"] == torch.__version__ and prov["device"].startswith("cpu") and prov["commit"]


def test_identifier_columns_stay_text_and_ragged_rows_do_not_crash(tmp_path):
    # a config hash may be all digits, or digits with one "e" (a float to Python), and commits likewise
    rows = [{"key": "012345678901", "run": "forward-1234e5678901", "commit": "123456789012", "seed": 0},
            {"key": "1234e5678901", "run": "r", "commit": "abc", "seed": 1}]
    write_table(rows, tmp_path / "t.csv")
    back = read_table(tmp_path / "t.csv")
    assert [r["key"] for r in back] == ["012345678901", "1234e5678901"] and back[0]["commit"] == "123456789012"
    assert [r["seed"] for r in back] == [0, 1]
    (tmp_path / "ragged.csv").write_text("key,seed\nabc\ndef,1,extra\n")
    short, long = read_table(tmp_path / "ragged.csv")
    assert short == {"key": "abc", "seed": None} and long["seed"] == 1 and long[None] == ["extra"]
