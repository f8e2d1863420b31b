"""Sharded sweeps: disjoint slices, a killed shard restarts where it stopped, one merged table."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nexttok.graphs import TaskError
from nexttok.records import read_table
from nexttok.sweep import load_sweep, parse_shard, select

BASE = {"deg": 2, "path_len": 4, "num_nodes": 12, "layers": 1, "dim": 32, "heads": 2, "batch_size": 32,
        "steps": 30, "warmup": 2, "eval_every": 10, "ckpt_every": 5, "n_test": 64, "device": "cpu"}


def sweep(*args, wait=True):
    cmd = [sys.executable, "-m", "nexttok", "sweep", *map(str, args), "--quiet"]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_sweep_files_and_named_grids(tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"base": BASE, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1]},
                                "runs": [{"mode": "teacherless"}]}))
    configs = load_sweep(str(spec))
    assert [(c.mode, c.seed) for c in configs] == [("forward", 0), ("forward", 1), ("reverse", 0), ("reverse", 1), ("teacherless", 0)]
    assert all(c.dim == 32 for c in configs)
    default = load_sweep("default")
    grid = load_sweep("grid")
    assert {c.lr for c in grid if c.deg == 2} != {c.lr for c in grid if c.deg == 4}  # resolved: the recipe's
    remedies = load_sweep("remedies")  # every objective on the same seeds, the forward and reverse runs the headline's
    assert {c.key() for c in remedies if c.mode in ("forward", "reverse")} <= {c.key() for c in default}
    alone = load_sweep("indecipherable")  # position 2 alone, on the headline table's seeds
    assert {c.only_position for c in alone} == {2} and [c.seed for c in alone] == [c.seed for c in load_sweep("default")[:5]]
    spec.write_text('{"grid": {"sed": [0]}}')
    with pytest.raises(TaskError, match="unknown config keys: sed"):
        load_sweep(str(spec))
    spec.write_text('{"grid": ')
    with pytest.raises(TaskError, match="not valid JSON"):
        load_sweep(str(spec))
    with pytest.raises(TaskError, match="neither a sweep file nor a named grid"):
        load_sweep(str(tmp_path / "nope.json"))
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(TaskError, match="shard"):
            parse_shard(bad)


def test_where_keeps_one_part_of_a_sweep_and_refuses_what_selects_nothing():
    grid = load_sweep("grid")
    four = select(grid, ["deg=4"])
    assert len(four) == 24 and {c.deg for c in four} == {4} and four == [c for c in grid if c.deg == 4]
    reversed_g46 = select(grid, ["deg=4", "mode=reverse", "num_nodes=25"])  # terms combine; values read as JSON
    assert [(c.path_len, c.seed) for c in reversed_g46] == [(6, 0), (6, 1), (6, 2)]
    # a field the grid leaves to the recipe matches the recipe's value: lr 2e-3 is degree 4's
    assert select(grid, ["lr=2e-3"]) == four and select(grid, ["steps=1200"]) == [c for c in grid if c.deg == 3]
    for bad, msg in ((["deg=9"], "no config of the sweep has deg=9"), (["sed=1"], "not FIELD=VALUE"),
                     (["deg"], "not FIELD=VALUE")):
        with pytest.raises(TaskError, match=msg):
            select(grid, bad)


@pytest.mark.slow
def test_three_shards_one_killed_midway_collect_one_row_per_config(tmp_path):
    spec = tmp_path / "grid.json"
    spec.write_text(json.dumps({"base": BASE, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1, 2]}}))
    out = tmp_path / "out"
    for i in (0, 2):
        r = sweep(spec, "--out", out, "--shard", f"{i}/3")
        assert r.returncode == 0, r.stderr

    # shard 1 is killed while its second run is under way
    proc = sweep(spec, "--out", out, "--shard", "1/3", wait=False)
    table = out / "results-shard-1-of-3.csv"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if table.exists() and len(list((out / "runs").glob("*/checkpoint.pt"))) == 6:
            break  # the first run is in the table and the second has a checkpoint
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(read_table(table)) == 1

    r = sweep(spec, "--out", out, "--collect")
    assert r.returncode == 1 and "missing: " in r.stderr and "5 of 6 configs" in r.stderr

    r = sweep(spec, "--out", out, "--shard", "1/3")  # restarts: run 1 from the cache, run 2 from its checkpoint
    assert r.returncode == 0, r.stderr
    r = sweep(spec, "--out", out, "--collect")
    assert r.returncode == 0, r.stderr
    rows = read_table(out / "results.csv")
    assert len(rows) == 6 and len({row["key"] for row in rows}) == 6
    assert [(row["mode"], row["seed"]) for row in rows] == [(m, s) for m in ("forward", "reverse") for s in (0, 1, 2)]
    for row in rows:  # provenance on every row
        assert row["commit"] and row["torch"] and row["date"] and row["wall_seconds"] > 0
        assert row["command"].startswith("nexttok sweep") and row["device"].startswith("cpu")
        assert row["steps"] == 30 and 0 <= row["gen_accuracy"] <= 1

    shutil.copy(out / "results-shard-0-of-3.csv", out / "results-shard-0-of-2.csv")
    r = sweep(spec, "--out", out, "--collect")
    assert r.returncode == 2 and "is in both" in r.stderr


def test_a_bad_config_is_named_by_its_number_and_a_huge_grid_is_refused(tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"base": BASE, "grid": {"lr": [1e-3, 2.0]}}))
    with pytest.raises(TaskError, match=r"config 2 \(lr=2.0\): lr must be in \(0, 1\]"):
        load_sweep(str(spec))
    spec.write_text(json.dumps({"grid": {"seed": list(range(1000)), "n_eval": list(range(1, 1001))}}))
    started = time.perf_counter()
    with pytest.raises(TaskError, match="1,000,000 configs, more than the 10,000"):
        load_sweep(str(spec))
    assert time.perf_counter() - started < 1
    spec.write_text("[]")
    with pytest.raises(TaskError, match="lists no configs"):
        load_sweep(str(spec))


def test_a_config_whose_data_file_is_missing_loads_and_fails_on_its_own(tmp_path):
    """A data file may appear later (another job writes it): the sweep loads, and only that config fails."""
    spec = tmp_path / "s.json"
    missing = {"train_file": str(tmp_path / "train.txt"), "test_file": str(tmp_path / "test.txt")}
    spec.write_text(json.dumps({"base": BASE, "runs": [missing, {**missing, "seed": 1}, {}]}))
    configs = load_sweep(str(spec))
    assert len(configs) == 3
    from nexttok.sweep import config_name

    assert config_name(configs[0]) == f"forward G(2,4) seed 0 (train_file {tmp_path / 'train.txt'})"


def test_a_row_that_starts_from_another_run_names_it_and_the_sweep_trains_it_first(tmp_path):
    """A curriculum as a sweep: the stage before is a config in the row's init_from; the row's key names that run,
    so it reads no checkpoint and keys alike where the runs are committed without theirs (a fresh clone)."""
    from nexttok.records import RunRecord
    from nexttok.rundir import start_checkpoint
    from nexttok.runs import run_name

    g3 = {"path_len": 3, "steps": 6}
    spec = tmp_path / "curriculum.json"
    spec.write_text(json.dumps({"base": {**BASE, "steps": 4, "mode": "hybrid"},
                                "runs": [{"init_from": g3, "seed": s} for s in (0, 1)]}))
    parent, first, second = load_sweep(str(spec))  # the stage before, once, then the rows
    assert (parent.path_len, parent.steps, parent.init_from) == (3, 6, None)
    assert first.init_from == second.init_from == run_name(parent) and first.key() != second.key()
    assert select([parent, first, second], ["seed=1"]) == [parent, second], "a chosen row brings its stage before"
    loop = tmp_path / "loop.yaml"  # a YAML alias that makes a row its own stage before
    loop.write_text("runs:\n  - &row {mode: hybrid, init_from: *row}\n")
    with pytest.raises(TaskError, match="more than 16 stages deep"):
        load_sweep(str(loop))
    result = sweep(spec, "--out", tmp_path / "out", "--where", "seed=1")
    assert result.returncode == 0, result.stderr
    runs = tmp_path / "out" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted([run_name(parent), run_name(second)])
    assert json.loads((runs / run_name(second) / "config.json").read_text())["init_from"] == run_name(parent)
    # committed as results are, without checkpoints: the child still loads and keys as its folder's name says
    for ckpt in runs.glob("*/checkpoint.pt"):
        ckpt.unlink()
    child = RunRecord.load(runs / run_name(second))
    assert run_name(child.config) == run_name(second) and load_sweep(str(spec))[2].key() == second.key()
    # training from a run's name wants that run, finished, beside it
    with pytest.raises(TaskError, match="keeps no checkpoint.pt"):
        start_checkpoint(run_name(parent), runs)
    with pytest.raises(TaskError, match=r"no checkpoint there \(nor in .*\); give a run folder"):
        start_checkpoint("hybrid-0123456789ab", runs)
    renamed = runs / "hybrid-0123456789ab"
    shutil.copytree(runs / run_name(parent), renamed)
    with pytest.raises(TaskError, match="is not the config of the run hybrid-0123456789ab"):
        start_checkpoint(renamed.name, runs)
    (runs / run_name(parent) / "metrics.json").unlink()
    with pytest.raises(TaskError, match="has not finished"):
        start_checkpoint(run_name(parent), runs)
