"""Reliability, round two (issue 36): each numbered case of the second adversarial pass, tried as a hostile user
would, and made a clean one-line refusal or a correct result; one test named after each case.

Everything is tiny and runs in this process through `nexttok.cli.main` (see tests/test_reliability.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nexttok import memory
from nexttok.config import RunConfig
from nexttok.graphs import TaskError
from nexttok.rundir import save_checkpoint, state_digest

from conftest import tiny_config
from test_reliability import (TINY, assert_one_line_error, file_hashes, good_lines, interrupted_run, run_cli,
                              tiny_flags)

# the issue's $T
T = ["--layers", "1", "--dim", "32", "--heads", "2", "--deg", "2", "--path-len", "3", "--num-nodes", "10", "--device",
     "cpu", "--batch-size", "8", "--steps", "5", "--n-test", "16", "--quiet"]
GIB = 1 << 30


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def four_gib(monkeypatch):
    """A machine with 4 GiB free, whatever this one has: the refusals below do not depend on where they run."""
    monkeypatch.setattr(memory, "available", lambda device: (4 * GIB, "available on this machine"))


def with_flags(base, **changes):
    flags = list(base)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if flag in flags:
            flags[flags.index(flag) + 1] = str(value)
        else:
            flags += [flag, str(value)]
    return flags


# ---------------------------------------------------------------------------------------------------------
# Memory and hangs


def test_case_01_a_million_nodes_is_refused_by_its_memory_before_allocating(tmp_path, four_gib):
    started = time.perf_counter()
    status, out, err = run_cli(["train", *with_flags(T, num_nodes=1_000_000, n_test=2048), "--out", tmp_path / "o"])
    assert_one_line_error(status, out, err, r"this run needs about [\d.]+ GiB \(evaluation [\d.]+ GiB.*more than the "
                                            r"4.0 GiB available on this machine")
    assert time.perf_counter() - started < 5 and not (tmp_path / "o").exists()


def test_case_01_the_estimate_follows_the_sizes_and_a_small_run_fits():
    small = memory.estimate(tiny_config())
    assert sum(small.values()) < 64 << 20
    big = memory.estimate(tiny_config(num_nodes=1_000_000, n_test=2048))
    assert big["evaluation"] > 1000 * small["evaluation"] and big["model and AdamW"] > 16 * 64_000_000
    # the real machine's memory is read (MemAvailable) and the tiny run fits in it
    free, where = memory.available(torch.device("cpu"))
    assert free is None or free > 0
    assert memory.check_memory(tiny_config(), torch.device("cpu")) == small


def test_case_02_mtp_heads_are_bounded_by_the_target_length():
    for heads in (4, 1_000_000_000):
        status, out, err = run_cli(["train", *with_flags(T, layers=2, mode="mtp", mtp_heads=heads)])
        assert_one_line_error(status, out, err, r"--mtp-heads \d+ is more heads than the 3 target tokens")
    # as many heads as target tokens is allowed, and each extra head counts in the model's size
    cfg = tiny_config(mode="mtp", mtp_heads=4)
    assert memory.model_params(cfg) > memory.model_params(tiny_config(mode="mtp", mtp_heads=2))


@pytest.mark.parametrize("changes, msg", [
    ({"n_test": 10_000_000, "num_nodes": 1_000_000}, r"drawing 10,000,000 graphs over 1,000,000 labels"),
    ({"n_train": 100_000_000}, r"distinct graphs"),
    ({"n_train": 100_000_000, "num_nodes": 100}, r"this run needs about .*graphs [\d.]+ GiB"),
])
def test_case_04_huge_test_and_train_sets_are_refused_at_once(tmp_path, four_gib, changes, msg):
    started = time.perf_counter()
    assert_one_line_error(*run_cli(["train", *with_flags(T, **changes), "--out", tmp_path / "o"]), msg)
    assert time.perf_counter() - started < 5


def test_case_06_a_huge_one_line_data_file_is_refused_before_it_is_parsed(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "w") as f:  # 12 MB on one line (the was 121 MB; the refusal does not depend on it)
        f.write("1,2|" * 3_000_000 + "1,2/1,2=1,2\n")
    (tmp_path / "test.txt").write_text(good_lines(16))
    started = time.perf_counter()
    status, out, err = run_cli(["train", *TINY, "--train-file", big, "--test-file", tmp_path / "test.txt",
                                "--out", tmp_path / "o"])
    assert_one_line_error(status, out, err, re.escape(str(big)) + r":1: a line of 12,000,011 characters, longer than")
    assert time.perf_counter() - started < 5


def test_case_06_a_huge_batch_is_refused_by_its_memory(four_gib):
    assert_one_line_error(*run_cli(["train", *with_flags(T, batch_size=1_048_576)]), r"activations [\d.]+ GiB")


def test_case_06_a_second_signal_stops_within_the_step(tmp_path, monkeypatch):
    """A step that takes long: the first SIGTERM waits for it, a second one stops at once (status 143) and the last
    checkpoint stays as it was."""
    from nexttok.train import Run

    interrupted_run(tmp_path / "run", step=5)
    before = file_hashes(tmp_path / "run")
    original = Run.train_step

    def slow(self):
        if self.step == 5:  # the step after the checkpoint: two signals arrive in its middle
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("the second signal did not stop the step")
        return original(self)

    monkeypatch.setattr(Run, "train_step", slow)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert status == 143 and "interrupted twice (SIGTERM)" in err and "Traceback" not in err
    after = file_hashes(tmp_path / "run")
    assert after["checkpoint.pt"] == before["checkpoint.pt"]


def test_case_06_a_sweep_of_too_many_configs_is_refused_and_the_limit_loads_fast(tmp_path):
    from nexttok.sweep import MAX_CONFIGS, load_sweep

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"grid": {"seed": list(range(99_999))}}))
    started = time.perf_counter()
    assert_one_line_error(*run_cli(["sweep", spec, "--collect"]), r"99,999 configs, more than the 10,000")
    assert time.perf_counter() - started < 5
    spec.write_text(json.dumps({"grid": {"seed": list(range(2000))}}))
    started = time.perf_counter()
    assert len(load_sweep(str(spec))) == 2000
    assert (time.perf_counter() - started) * MAX_CONFIGS / 2000 < 60  # the largest sweep loads within a minute


def billion_laughs(depth: int = 9) -> str:
    """A sweep whose one value is 9**9 strings when expanded: a few hundred bytes on disk."""
    text = '&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
    for i in range(1, depth):
        text = f"&l{i} [" + text + ", " + ", ".join([f"*l{i - 1}"] * 8) + "]"
    return "runs: [{seed: " + text + "}]\n"


def test_case_03_a_billion_laughs_sweep_is_refused_with_a_bounded_excerpt(tmp_path):
    pytest.importorskip("yaml")
    import tracemalloc

    spec = tmp_path / "laughs.yaml"
    spec.write_text(billion_laughs())
    assert spec.stat().st_size < 1000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        status, out, err = run_cli(["sweep", spec, "--collect"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(status, out, err, r"config 1 \(seed=\[\[\[\.\.\.\].*seed must be an int")
    assert len(err) < 400 and peak < 50 << 20 and time.perf_counter() - started < 5


def test_case_03_an_unknown_key_of_any_size_is_named_in_a_bounded_excerpt():
    with pytest.raises(TaskError) as err:
        RunConfig.from_dict({"x" * 10_000_000: 1, "seed": ["lol"] * 10_000_000})
    assert len(str(err.value)) < 300 and "unknown config keys: xxxx" in str(err.value)
    with pytest.raises(TaskError) as err:
        RunConfig.from_dict({"seed": [["lol"] * 1000] * 1000})
    assert len(str(err.value)) < 200


def test_case_05_a_fifo_checkpoint_is_refused_not_waited_on(tmp_path):
    interrupted_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoint.pt").unlink()
    os.mkfifo(tmp_path / "run" / "checkpoint.pt")
    before = file_hashes(tmp_path / "run", skip=("checkpoint.pt",))
    started = time.perf_counter()
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"], seconds=10)
    assert_one_line_error(status, out, err, r"checkpoint.pt: a FIFO, not a file a run writes")
    assert time.perf_counter() - started < 5
    assert file_hashes(tmp_path / "run", skip=("checkpoint.pt",)) == before


@pytest.mark.parametrize("name", ["config.json", "metrics.json", ".lock", "history.csv"])
def test_case_05_a_fifo_of_any_run_file_is_refused(tmp_path, name):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / name)
    assert_one_line_error(*run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"], seconds=10),
                          re.escape(name) + ": a FIFO")


def test_case_05_fifo_data_files_and_run_files_are_refused_by_every_reader(tmp_path):
    from nexttok.config import file_digest
    from nexttok.records import RunRecord, read_table

    os.mkfifo(tmp_path / "fifo")
    for read in (lambda: file_digest(str(tmp_path / "fifo")), lambda: read_table(tmp_path / "fifo"),
                 lambda: RunRecord.load(tmp_path)):
        with pytest.raises(TaskError, match="FIFO|not a regular file|not a readable run file"):
            read()
    assert_one_line_error(*run_cli(["train", *TINY, "--train-file", tmp_path / "fifo", "--test-file",
                                    tmp_path / "fifo"], seconds=10), "fifo")


# ---------------------------------------------------------------------------------------------------------
# Checkpoints crafted with the digest recomputed (it guards against corruption, not against a crafted file)


def craft(folder: Path, change) -> None:
    """Rewrite folder/checkpoint.pt with `change(state)` applied and its digest recomputed, as anyone can."""
    path = folder / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state.pop("digest")
    change(state)
    torch.save({**state, "digest": state_digest(state)}, path)


def setter(**values):
    return lambda state: state.update(values)


def resume_refused(tmp_path, change, match):
    interrupted_run(tmp_path / "run")  # 6 of 8 steps: one evaluation (step 4), two steps since it
    craft(tmp_path / "run", change)
    before = file_hashes(tmp_path / "run")
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, match)
    assert file_hashes(tmp_path / "run") == before


@pytest.mark.parametrize("change, match", [
    (setter(step=10 ** 12), r"step 1000000000000 is not in 0..8"),
    (setter(step=-5), r"step -5 is not in 0..8"),
    (setter(history=[{"step": "four"}]), r"history's evaluation at step 4 is \{'step': 'four'\}"),
    (setter(history=[{"step": 4, "lr": 0.1, "train_loss": 2.0, "gen_accuracy": [[1]]}]), r"history's gen_accuracy"),
    (setter(history=[]), r"history holds 0 evaluations, not the 1 of 6 steps"),
    (setter(history={"step": 4}), r"history is dict, not a list"),
], ids=["huge-step", "negative-step", "step-a-word", "nested-metric", "history-empty", "history-a-dict"])
def test_case_11_crafted_checkpoints_with_a_recomputed_digest_are_refused(tmp_path, change, match):
    resume_refused(tmp_path, change, match)


def test_case_11_a_huge_step_never_reaches_metrics(tmp_path):
    interrupted_run(tmp_path / "run")
    craft(tmp_path / "run", setter(step=10 ** 12))
    run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert not (tmp_path / "run" / "metrics.json").exists()


def wrong_shape(state):
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3, 3)


def missing_weight(state):
    state["model"].pop(next(iter(state["model"])))


def wrong_optimizer_moment(state):
    first = next(iter(state["optimizer"]["state"].values()))
    first["exp_avg"] = torch.zeros(7)


@pytest.mark.parametrize("change, match", [
    (setter(step="6"), r"step '6' is not in 0..8"),
    (setter(history="[]"), r"history is str"),
    (setter(loss_sum="1.5"), r"loss_sum '1.5' is not a finite number"),
    (setter(train_seconds="3"), r"train_seconds '3' is not a finite number"),
    (setter(train_seconds=float("nan")), r"train_seconds nan is not a finite number"),
    (setter(loss_count=-1), r"loss_count -1 is not the 2 steps"),
    (wrong_shape, r"holds weights of another model"),
    (missing_weight, r"holds weights of another model"),
    (setter(step=8, history=[]), r"history holds 0 evaluations, not the 2 of 8 steps"),
    (wrong_optimizer_moment, r"optimiser state that is not this run's \(AdamW's exp_avg"),
    (setter(optimizer={"state": {}, "param_groups": "x"}), r"optimiser state that is not this run's"),
], ids=["step-a-string", "history-a-string", "loss-sum-a-string", "seconds-a-string", "seconds-nan",
        "negative-count", "wrong-shape", "missing-weight", "huge-step-empty-history", "optimizer-shape",
        "optimizer-malformed"])
def test_case_13_crafted_checkpoints_that_were_tracebacks_are_refused_in_one_line(tmp_path, change, match):
    resume_refused(tmp_path, change, match)


def test_case_11_the_untouched_checkpoint_still_resumes(tmp_path):
    """The checks pass a real checkpoint (and one re-saved with its digest recomputed, unchanged)."""
    interrupted_run(tmp_path / "run")
    craft(tmp_path / "run", lambda state: None)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert status == 0, err
    assert json.loads(out)["steps"] == 8
