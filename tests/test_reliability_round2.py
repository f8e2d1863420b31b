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

from conftest import tiny_config, with_flags
from test_reliability import (TINY, assert_one_line_error, file_hashes, good_lines, interrupted_run, run_cli,
                              tiny_flags)

# the issue's $T
T = ["--layers", "1", "--dim", "32", "--heads", "2", "--deg", "2", "--path-len", "3", "--num-nodes", "10", "--device",
     "cpu", "--batch-size", "8", "--steps", "5", "--n-test", "16", "--quiet"]
GIB = 1 << 30


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def four_gib(monkeypatch):
    """A machine with 4 GiB free, whatever this one has: the refusals below do not depend on where they run."""
    monkeypatch.setattr(memory, "available", lambda device: (4 * GIB, "available on this machine"))


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


def test_case_06_a_sweep_of_too_many_configs_is_refused_before_its_configs_are_built(tmp_path, monkeypatch):
    # how fast a sweep loads is measured by `nexttok bench`-style timing in the closing notes, not asserted here
    import nexttok.sweep as sweep

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"grid": {"seed": list(range(99_999))}}))
    assert_one_line_error(*run_cli(["sweep", spec, "--collect"]), r"99,999 configs, more than the 10,000")
    built = []
    monkeypatch.setattr(sweep, "resolve", lambda cfg: built.append(cfg) or cfg)
    with pytest.raises(TaskError, match="more than the 10,000"):
        sweep.load_sweep(str(spec))
    assert not built, "the size is checked before any config is resolved"
    spec.write_text(json.dumps({"grid": {"seed": list(range(2000))}}))
    monkeypatch.undo()
    assert len(sweep.load_sweep(str(spec))) == 2000


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


# ---------------------------------------------------------------------------------------------------------
# A run folder's contract: no file lost, mixed or silently falsified


def tiny_sweep(tmp_path, seeds=(0, 1, 2)) -> Path:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"base": tiny_config(steps=4, eval_every=4, ckpt_every=4).to_dict(),
                                "grid": {"seed": list(seeds)}}))
    return spec


def test_case_07_a_truncated_cached_metrics_is_named_and_rerun_and_no_row_is_lost(tmp_path):
    from nexttok.records import read_table

    spec = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    status, _, err = run_cli(["sweep", spec, "--out", out, "--quiet"], seconds=120)
    assert status == 0, err
    table = out / "results-shard-0-of-1.csv"
    before = read_table(table)
    metrics = sorted((out / "runs").glob("*/metrics.json"))[1]
    metrics.write_text(metrics.read_text()[:40])  # truncated
    status, _, err = run_cli(["sweep", spec, "--out", out, "--quiet"], seconds=120)
    assert status == 0, err
    assert re.search(re.escape(str(metrics)) + r": not a readable run file .*: running it again", err)
    after = read_table(table)
    assert [r["key"] for r in after] == [r["key"] for r in before] and len(after) == 3
    assert [r["gen_accuracy"] for r in after] == [r["gen_accuracy"] for r in before]
    assert json.loads(metrics.read_text())["steps"] == 4  # rewritten from the run's last checkpoint


def test_case_07_a_config_that_fails_now_keeps_the_row_the_table_had(tmp_path):
    from nexttok.records import read_table

    spec = tiny_sweep(tmp_path)
    out = tmp_path / "out"
    assert run_cli(["sweep", spec, "--out", out, "--quiet"], seconds=120)[0] == 0
    before = read_table(out / "results-shard-0-of-1.csv")
    for run in sorted((out / "runs").glob("*")):
        (run / "metrics.json").write_text("{")  # unreadable, and its checkpoint too: it cannot be finished again
        (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    status, out_, err = run_cli(["sweep", spec, "--out", out, "--quiet"], seconds=120)
    assert status == 2 and "Traceback" not in err and out_ == ""
    assert [line for line in err.splitlines() if line.startswith("nexttok: error: ")] == [
        f"nexttok: error: 3 of 3 configs failed; {out / 'results-shard-0-of-1.csv'} holds the others:"]
    assert err.count(": running it again") == 3
    assert err.count("(its earlier row is kept)") >= 3
    assert read_table(out / "results-shard-0-of-1.csv") == before


def test_case_08_run_files_the_run_did_not_write_are_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "o"
    folder.mkdir()
    (folder / "history.csv").write_text("mine\n")
    (folder / "provenance.json").write_text("{}\n")
    before = file_hashes(folder)
    status, out, err = run_cli(["train", *T, "--out", folder])
    assert_one_line_error(status, out, err, r"holds files that are not a run.s \(history.csv, provenance.json\)")
    assert file_hashes(folder) == before and not (folder / ".lock").exists()


def data_run(tmp_path, interrupted: bool) -> tuple[list, Path]:
    (tmp_path / "train.txt").write_text(good_lines(64, seed=1))
    (tmp_path / "test.txt").write_text(good_lines(16, seed=2))
    flags = ["train", *TINY, "--train-file", tmp_path / "train.txt", "--test-file", tmp_path / "test.txt", "--out",
             tmp_path / "run"]
    if interrupted:
        from nexttok.resolve import resolve as resolve_

        cfg = resolve_(RunConfig(**{**tiny_config().to_dict(), "train_file": str(tmp_path / "train.txt"),
                                    "test_file": str(tmp_path / "test.txt")}))
        interrupted_run(tmp_path / "run", cfg=cfg)
    else:
        assert run_cli(flags)[0] == 0
    return flags, tmp_path / "train.txt"


@pytest.mark.parametrize("interrupted", [False, True], ids=["finished", "interrupted"])
def test_case_09_a_data_file_changed_after_its_out_run_is_named(tmp_path, interrupted):
    flags, data = data_run(tmp_path, interrupted)
    before = file_hashes(tmp_path / "run")
    data.write_text(good_lines(64, seed=7))  # the same shape, other graphs
    status, out, err = run_cli([*flags, "--resume"])
    assert_one_line_error(status, out, err, r"train_file .*train.txt changed since")
    assert file_hashes(tmp_path / "run") == before
    data.write_text(good_lines(64, seed=1))  # restored: the run is its own again
    status, out, err = run_cli([*flags, "--resume"])
    assert status == 0 and json.loads(out)["steps"] == 8, err


def test_case_10_a_run_nested_inside_another_is_refused(tmp_path):
    interrupted_run(tmp_path / "H")
    before = file_hashes(tmp_path)
    status, out, err = run_cli(["train", *T, "--out", tmp_path / "H" / "nested"])
    assert_one_line_error(status, out, err, r"is inside the run folder .*H; a run cannot hold another")
    assert file_hashes(tmp_path) == before
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "H", "--resume"])
    assert status == 0 and json.loads(out)["steps"] == 8, err  # H still resumes


def test_case_12_a_finished_runs_edited_config_is_not_reported_as_the_new_settings(tmp_path):
    assert run_cli(["train", *TINY, "--out", tmp_path / "run"])[0] == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "lr": 0.5}))
    status, out, err = run_cli(["train", *TINY, "--lr", "0.5", "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, r"checkpoint was trained with other settings \(lr\)")


@pytest.mark.parametrize("text", ['{"gen_accuracy": 0.5}', '{"gen_accuracy": 0.5, "steps": 8}', "[]", "{"])
def test_case_12_a_truncated_metrics_json_is_not_printed_as_a_result(tmp_path, text):
    assert run_cli(["train", *TINY, "--out", tmp_path / "run"])[0] == 0
    (tmp_path / "run" / "metrics.json").write_text(text)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, r"metrics.json (is not this run's metrics|cannot be read)")


def test_case_12_a_sweep_over_an_edited_cached_config_reruns_it_not_a_blank_row(tmp_path):
    from nexttok.records import read_table

    spec = tiny_sweep(tmp_path, seeds=(0,))
    out = tmp_path / "out"
    assert run_cli(["sweep", spec, "--out", out, "--quiet"], seconds=120)[0] == 0
    before = read_table(out / "results-shard-0-of-1.csv")
    config = next((out / "runs").glob("*/config.json"))
    config.write_text(json.dumps({**json.loads(config.read_text()), "lr": 0.5}))
    status, _, err = run_cli(["sweep", spec, "--out", out, "--quiet"], seconds=120)
    assert status == 0 and "is not the config of this run (edited by hand?): running it again" in err, err
    after = read_table(out / "results-shard-0-of-1.csv")
    assert len(after) == 1 and after[0]["key"] == before[0]["key"] and after[0]["lr"] == before[0]["lr"]
    assert all(v not in (None, "") for k, v in after[0].items() if k in ("gen_accuracy", "lr", "steps"))


def test_minor_an_empty_out_is_refused_not_the_run_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run_cli(["train", *TINY, "--out", ""]), "--out is empty")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------------
# Clean edges


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    pytest.importorskip("transformers")
    from nexttok.models.pretrained import save_tiny

    return save_tiny(tmp_path_factory.mktemp("gpt2") / "gpt2", "gpt2")


def pretrained_flags(weights) -> list:
    return ["train", *with_flags(TINY, steps=2), "--model", "gpt2", "--weights", weights]


@pytest.mark.slow  # transformers: seconds to import
def test_case_14_a_truncated_safetensors_is_one_line(tmp_path, tiny_gpt2):
    import shutil

    weights = tmp_path / "w"
    shutil.copytree(tiny_gpt2, weights)
    (weights / "model.safetensors").write_bytes((weights / "model.safetensors").read_bytes()[:100])
    status, out, err = run_cli([*pretrained_flags(weights), "--out", tmp_path / "o"])
    assert_one_line_error(status, out, err, r"--weights .*: cannot load a model and its tokenizer")


@pytest.mark.slow
def test_case_14_a_pickled_pytorch_model_bin_is_one_line_and_never_runs(tmp_path, tiny_gpt2):
    import shutil

    from test_reliability import Payload

    weights = tmp_path / "w"
    shutil.copytree(tiny_gpt2, weights)
    (weights / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    torch.save({"transformer.wte.weight": Payload(marker)}, weights / "pytorch_model.bin")
    status, out, err = run_cli([*pretrained_flags(weights), "--out", tmp_path / "o"])
    assert_one_line_error(status, out, err, r"--weights .*: cannot load a model and its tokenizer")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_case_15_a_signal_while_starting_exits_in_one_line(tmp_path, signum):
    """`python -m nexttok` stopped at several moments of its first seconds (its imports): one line, 128 + the
    signal, no traceback, no run folder. (A signal before the package's first lines run ends the process as Python
    ends it, with no word or the interpreter's own KeyboardInterrupt; nothing of the package's can speak then. A
    slow machine can be there at the first moment, so the test asks only that some moment reached the handler.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    said = 0
    for delay in (0.3, 0.8, 1.5):
        out = tmp_path / f"run-{delay}"
        proc = subprocess.Popen([sys.executable, "-m", "nexttok", "train", *TINY, "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(delay)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        if proc.returncode == 0:  # it finished before the signal: nothing to check at this moment
            continue
        if proc.returncode == -signum:  # the interpreter was still starting (a slow machine): Python ended it
            assert not out.exists() and "nexttok:" not in stderr, stderr
            continue
        assert proc.returncode == 128 + signum, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith(f"nexttok: interrupted ({signal.Signals(signum).name})"), stderr
        said += 1
    assert said, "no moment reached the package's own handler: the check saw nothing"


def test_case_15_a_stop_signal_outside_a_step_is_one_line_in_process(tmp_path, monkeypatch):
    """Once the command runs, SIGTERM outside a training step (the data being drawn) ends in one line and 143."""
    import nexttok.train

    train_module = sys.modules["nexttok.train"]  # the module (nexttok.train is also the function's name)
    original = train_module.load_data

    def load_data(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "load_data", load_data)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "o"])
    assert status == 143 and err == "nexttok: interrupted (SIGTERM)\n" and out == ""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main leaves the handlers as it found them


def write_rows(path: Path, rows: list[dict]) -> Path:
    from nexttok.records import write_table

    write_table(rows, path)
    return path


@pytest.fixture
def results(tmp_path):
    """A results folder holding one good table of one run (a row as a sweep writes it)."""
    from nexttok.runs import get_run

    record = get_run(tiny_config(steps=4), tmp_path / "cache", progress=False)
    folder = tmp_path / "results"
    folder.mkdir()
    write_rows(folder / "good.csv", [record.row()])
    return folder, record.row()


@pytest.mark.parametrize("damage, match", [
    (lambda row: {k: v for k, v in row.items() if k != "key"}, r"no column key"),
    (lambda row: {k: v for k, v in row.items() if k != "gen_accuracy"}, r"no column gen_accuracy"),
    (lambda row: {**row, "tf_token_accuracy_2": ""}, r"bad.csv:2: the row of run \w+ has no tf_token_accuracy_2"),
], ids=["no-key-column", "no-metric-column", "empty-cell"])
def test_case_16_chapter_helpers_name_the_missing_column(results, damage, match):
    from nexttok.chapter import Precondition, committed_runs

    folder, row = results
    write_rows(folder / "bad.csv", [damage(row)])
    assert len(committed_runs("good.csv", folder)) == 1
    with pytest.raises(Precondition, match=match):
        committed_runs("bad.csv", folder)


def test_case_16_chapter_helpers_name_a_missing_file_or_an_empty_folder(tmp_path, results):
    from nexttok.chapter import Precondition, checked_rows, committed_runs, frame, results_path

    folder, _ = results
    with pytest.raises(Precondition, match=r"missing.csv: no such results table"):
        checked_rows(folder / "missing.csv")
    assert committed_runs("missing.csv", folder) == []  # an optional table a chapter may lack
    (tmp_path / "empty").mkdir()
    with pytest.raises(Precondition, match=r"holds no results table \(\*.csv\) and no folder of runs"):
        results_path(root=tmp_path / "empty")  # the summary chapter's listing
    with pytest.raises(Precondition, match=r"holds no results table"):
        committed_runs("headline_seeds.csv", tmp_path / "empty")  # the paper chapter's first table
    assert list(frame([])[frame([])["positions"] == "rope"].columns)[:2] == ["run", "key"]  # no KeyError: 'positions'


def test_minor_results_path_refuses_a_name_outside_the_results(results):
    from nexttok.chapter import Precondition, results_path

    folder, _ = results
    for parts in (("..", ".."), ("../x.csv",), ("/etc/passwd",)):
        with pytest.raises(Precondition, match="is not a name inside the results folder"):
            results_path(*parts, root=folder)
        with pytest.raises(Precondition, match="is not a name inside the results folder"):
            results_path(*parts)


# ---------------------------------------------------------------------------------------------------------
# Minor


@pytest.mark.parametrize("label", ["٤", "0_4", "4\u00a0", "+4"])
def test_minor_labels_are_ascii_digits_only(tmp_path, label):
    from nexttok.graphs import parse_line

    with pytest.raises(TaskError, match="is not a comma-separated list of integers"):
        parse_line(f"0,1|0,{label}/0,1=0,1")
    assert parse_line("0,1|0, 4/0,1=0,1")[0] == [(0, 1), (0, 4)]  # ASCII spaces as before


@pytest.mark.parametrize("name, text", [("s.json", '{"base": {"seed": 1, "seed": 2}}'),
                                        ("s.yaml", "base:\n  seed: 1\n  seed: 2\n"),
                                        ("t.json", '{"runs": [{"lr": 0.001}], "runs": []}')])
def test_minor_duplicate_keys_in_a_sweep_are_refused(tmp_path, name, text):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    (tmp_path / name).write_text(text)
    assert_one_line_error(*run_cli(["sweep", tmp_path / name, "--collect"]), r"appears twice")


def test_minor_argparse_errors_are_one_line():
    for argv, match in [(["train", "--steps", "x"], r"nexttok train: error: argument --steps: invalid int value"),
                        (["train", "--mode", "sideways"], r"argument --mode: invalid choice"), ([], "required: command")]:
        status, out, err = run_cli(argv)
        assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and re.search(match, err), err


def test_minor_a_key_with_a_control_character_is_named_on_one_line(tmp_path):
    """Found by the property tests: a checkpoint's config key "\\r" was printed raw, breaking the one line."""
    interrupted_run(tmp_path / "run")
    craft(tmp_path / "run", lambda state: state.update(config={**state["config"], "\r": None, "a\nb": 1}))
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, r"unknown config keys: '\\r', 'a\\nb'")
    assert "\r" not in err
