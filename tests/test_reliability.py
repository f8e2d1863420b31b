"""Reliability: each defect an adversarial pass found, made impossible and proved by a test named after it;
then a fuzz table of bad command lines, each run in-process through `nexttok.cli.main` and each refused in one
line, with no traceback, no hang and no change to the run folders and files beside it.

Everything here is tiny (the `tiny_config` run: 8 steps of a 1-layer model) and runs on one CPU core."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nexttok.cli import main
from nexttok.config import RunConfig
from nexttok.graphs import PathStar, TaskError, sample, sample_distinct, seeded_generator
from nexttok.resolve import resolve
from nexttok.rundir import state_digest
from nexttok.runs import load_trained
from nexttok.sweep import load_sweep, run_sweep
from nexttok.train import Run, train

from conftest import interrupt_during, tiny_config

# the command-line flags of tiny_config()
TINY = ["--deg", "2", "--path-len", "4", "--num-nodes", "12", "--layers", "1", "--dim", "32", "--heads", "2",
        "--steps", "8", "--batch-size", "32", "--warmup", "2", "--n-test", "64", "--eval-every", "4",
        "--ckpt-every", "4", "--device", "cpu", "--quiet"]
# the same for bench, which has no --eval-every, --ckpt-every or --quiet
BENCH = TINY[: TINY.index("--steps")] + ["--batch-size", "32", "--n-test", "64", "--device", "cpu"]
CASE_SECONDS = 20  # a case that runs longer hangs
# the subprocesses here train on one thread, as this module does (see `one_thread`): a resumed run then
# matches a straight one bit for bit, and two processes on a busy 2-core machine do not fight over threads
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_flags(**changes) -> list[str]:
    """TINY with some values changed, e.g. tiny_flags(steps=12)."""
    flags = list(TINY)
    for name, value in changes.items():
        flags[flags.index("--" + name.replace("_", "-")) + 1] = str(value)
    return flags


class Hang(BaseException):
    """A case ran past CASE_SECONDS (a BaseException, so no `except Exception` in the code can swallow it)."""


def run_cli(argv, seconds: int = CASE_SECONDS) -> tuple[int, str, str]:
    """main(argv) in this process: (exit status, stdout, stderr). argparse's errors exit through SystemExit."""
    out, err = io.StringIO(), io.StringIO()

    def hang(signum, frame):
        raise Hang(f"{argv} ran past {seconds} s")

    previous, grad = signal.signal(signal.SIGALRM, hang), torch.is_grad_enabled()
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in argv])
            except SystemExit as exit_:
                status = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_grad_enabled(grad)  # a hang stopped mid-`no_grad` must not leave the next case without gradients
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(status, stdout, stderr, match=None):
    """Refused: status 2, nothing on stdout, no traceback, and exactly one `nexttok: error:` line; the only
    other lines are a sweep's per-config failures and the indented list its error ends with."""
    assert status == 2, (status, stderr)
    assert "Traceback" not in stderr and stdout == "", stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("nexttok: error: ")]
    assert len(errors) == 1, stderr
    assert all(line in errors or line.startswith(("  ", "[shard ")) for line in lines), stderr
    if match:
        assert re.search(match, stderr), (match, stderr)


def assert_argparse_error(status, stdout, stderr, match=None):
    assert status == 2, (status, stderr)
    assert "Traceback" not in stderr and stdout == "", stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"nexttok( \w+)?: error: .* \(see nexttok( \w+)? --help\)$", lines[-1]), stderr
    assert sum("error:" in line for line in lines) == 1, stderr
    if match:
        assert re.search(match, lines[-1]), (match, stderr)


def file_hashes(root: Path, skip=("scratch",)) -> dict[str, str]:
    """Every file and folder under root (but `skip`), with its contents' SHA-256."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        hashes[str(rel)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def good_lines(n: int, seed: int = 0, task=PathStar(2, 4, 12)) -> str:
    from nexttok.graphs import to_lines

    return "\n".join(to_lines(sample(task, n, seeded_generator(seed, "lines")))) + "\n"


class Payload:
    """Unpickled as code, it writes `marker`: what a checkpoint must never be able to do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('the payload ran')",)


def interrupted_run(folder: Path, step: int = 6, cfg: RunConfig | None = None) -> None:
    """A run of tiny_config() stopped by Ctrl-C during step `step`: a checkpoint, no metrics."""
    with pytest.MonkeyPatch.context() as mp, interrupt_during(mp, step):
        with pytest.raises(TaskError, match="interrupted"):
            train(cfg or tiny_config(), folder, progress=False)


# ---------------------------------------------------------------------------------------------------------
# 1. Checkpoint loading executes code


def test_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    interrupted_run(tmp_path / "run")
    marker = tmp_path / "marker"
    torch.save({"config": {}, "model": Payload(marker)}, tmp_path / "run" / "checkpoint.pt")
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, "not a readable checkpoint")
    assert not marker.exists()
    # the payload is real: an unsafe load runs it
    torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert marker.read_text() == "the payload ran"


# ---------------------------------------------------------------------------------------------------------
# 2. Two runs on one --out


def test_a_folder_another_process_trains_in_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status, out, err = run_cli(["train", *TINY, "--out", folder])
    assert_one_line_error(status, out, err, "another process is training in")
    assert [p.name for p in folder.iterdir()] == [".lock"]  # nothing written


def lock_holder(lock: Path) -> int | None:
    """The process holding an flock on `lock`, from /proc/locks (Linux); None where it cannot be told."""
    try:
        inode = os.stat(lock).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "FLOCK" in fields and "->" not in fields and fields[-3].split(":")[-1] == str(inode):
                return int(fields[-4])
    except (OSError, ValueError, IndexError):
        pass
    return None


@pytest.mark.slow
def test_two_processes_training_into_one_folder_one_wins_one_is_refused(tmp_path):
    folder = tmp_path / "run"
    flags = tiny_flags(steps=40, eval_every=40, ckpt_every=2)
    cmd = [sys.executable, "-m", "nexttok", "train", *flags, "--out", str(folder)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
             for _ in range(2)]
    try:
        # once one of them checkpoints, hold it still until the other has met the lock
        deadline = time.time() + 120
        while not (folder / "checkpoint.pt").exists() and time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.01)
        holder = lock_holder(folder / ".lock")
        winner = next((p for p in procs if p.pid == holder), None)
        if winner is not None:
            os.kill(winner.pid, signal.SIGSTOP)
            loser = next(p for p in procs if p is not winner)
            loser.wait(timeout=120)
            os.kill(winner.pid, signal.SIGCONT)
        results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sorted(r[0] for r in results) == [0, 2], results
    (_, won_out, _), (_, _, lost_err) = sorted(results, key=lambda r: r[0])
    assert "another process is training in" in lost_err and "Traceback" not in lost_err
    # the folder holds one consistent, finished run
    assert {p.name for p in folder.iterdir()} == {"config.json", "metrics.json", "history.csv", "provenance.json",
                                                  "checkpoint.pt", ".lock"}
    cfg = tiny_config(steps=40, eval_every=40, ckpt_every=2)
    assert json.loads((folder / "config.json").read_text()) == cfg.to_dict()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == json.loads(won_out) and metrics["steps"] == 40
    assert load_trained(folder).step == 40
    assert len((folder / "history.csv").read_text().splitlines()) == 2


# ---------------------------------------------------------------------------------------------------------
# 3. The run cache keyed on a data file's path


def test_a_regenerated_data_file_is_a_new_run_not_a_stale_cache_entry(tmp_path):
    train_file, test_file = tmp_path / "train.txt", tmp_path / "test.txt"
    train_file.write_text(good_lines(64, seed=1))
    test_file.write_text(good_lines(16, seed=2))
    cfg = tiny_config(steps=4, eval_every=4, train_file=str(train_file), test_file=str(test_file))
    first = cfg.key()
    # the same size, other contents, within the file system's timestamp granularity
    lines = train_file.read_text().splitlines()
    train_file.write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    assert train_file.stat().st_size == len(good_lines(64, seed=1))
    assert cfg.key() != first
    train_file.write_text(good_lines(64, seed=3))
    second = cfg.key()
    assert second != first and cfg.key() == second

    out = tmp_path / "sweep"
    train_file.write_text(good_lines(64, seed=1))
    run_sweep([cfg], out, progress=False)
    before = {p.name for p in (out / "runs").iterdir()}
    train_file.write_text(good_lines(64, seed=3))  # the same path, other graphs
    table = run_sweep([cfg], out, progress=False)
    after = {p.name for p in (out / "runs").iterdir()}
    assert len(before) == 1 and len(after) == 2, "trained anew, not the stale row"
    from nexttok.records import read_table

    assert [row["key"] for row in read_table(table)] == [cfg.key()] == [second]


def test_a_cached_file_digest_follows_the_file(tmp_path, monkeypatch):
    from nexttok import config

    path = tmp_path / "train.txt"
    path.write_text(good_lines(8, seed=1))
    clock = [time.time_ns() + 10**10]  # ten seconds on: the file is no longer "racy", its digest is cached
    monkeypatch.setattr(config.time, "time_ns", lambda: clock[0])
    first = config.file_digest(str(path))
    assert config.file_digest(str(path)) == first
    time.sleep(0.1)  # past the file system's timestamp granularity
    path.write_text(good_lines(8, seed=2))  # new ctime (and mtime): a new cache entry
    clock[0] = time.time_ns() + 10**10
    assert config.file_digest(str(path)) != first


# ---------------------------------------------------------------------------------------------------------
# 4. Divergence


@pytest.mark.parametrize("lr,msg", [("inf", "lr must be a number"), ("nan", "lr must be a number"),
                                    ("1e30", r"lr must be in \(0, 1\]"), ("-inf", "lr must be a number")])
def test_an_infinite_or_huge_lr_is_refused(tmp_path, lr, msg):
    status, out, err = run_cli(["train", *TINY, f"--lr={lr}", "--out", tmp_path / "run"])
    assert_one_line_error(status, out, err, msg)
    assert not (tmp_path / "run").exists()


def test_a_loss_that_turns_nan_stops_the_run_at_that_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train_module = sys.modules["nexttok.train"]  # (nexttok.train is also the function)
    original, calls = train_module.TrainingLoss.forward, []

    def diverging(self, graphs, generator):
        calls.append(1)
        loss = original(self, graphs, generator)
        return loss * float("nan") if len(calls) >= 6 else loss

    monkeypatch.setattr(train_module.TrainingLoss, "forward", diverging)
    folder = tmp_path / "run"
    status, out, err = run_cli(["train", *tiny_flags(steps=12), "--out", folder])
    assert_one_line_error(status, out, err, r"training diverged at step 6: the loss is not finite")
    assert {p.name for p in folder.iterdir()} == {"config.json", "checkpoint.pt", ".lock"}  # no metrics, no temp files
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_weights_that_turn_nan_under_a_finite_loss_are_caught_before_a_checkpoint(tmp_path, monkeypatch):
    original = Run.train_step

    def poisoning(self):
        loss = original(self)
        if self.step == 4:  # after the update of step 4, whose loss was finite
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("inf"))
        return loss

    monkeypatch.setattr(Run, "train_step", poisoning)
    with pytest.raises(TaskError, match="diverged by step 4: the weights are not finite"):
        train(tiny_config(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_metrics_json_is_strict_json_when_a_metric_is_not_finite(tmp_path, monkeypatch):
    train_module = sys.modules["nexttok.train"]
    original = train_module.evaluate

    def with_nan(*args, **kwargs):
        return {**original(*args, **kwargs), "tf_loss": float("nan")}

    monkeypatch.setattr(train_module, "evaluate", with_nan)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run"])
    assert status == 0, err

    def refuse(constant):
        raise ValueError(f"bare {constant} in strict JSON")

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["tf_loss"] is None and json.loads(out, parse_constant=refuse) == metrics


def test_a_bit_flipped_checkpoint_is_refused_on_resume(tmp_path):
    interrupted_run(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name].view(-1).view(torch.int32)[0] ^= 1  # one bit of one weight
    torch.save(state, ckpt)  # a well-formed file whose digest no longer matches
    before = ckpt.read_bytes()
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, "is corrupt \\(its contents do not match its digest\\)")
    assert ckpt.read_bytes() == before


# ---------------------------------------------------------------------------------------------------------
# 5. One-line errors


@pytest.mark.parametrize("damage,msg", [
    ("zero-byte", "not a readable checkpoint"), ("truncated", "not a readable checkpoint"),
    ("garbage", "not a readable checkpoint"), ("missing-key", "missing digest"), ("not-a-dict", "not a nexttok checkpoint"),
])
def test_a_broken_checkpoint_is_a_one_line_error(tmp_path, damage, msg):
    interrupted_run(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    data = ckpt.read_bytes()
    if damage == "zero-byte":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ckpt.write_bytes(random.Random(0).randbytes(4096))
    elif damage == "missing-key":
        state = torch.load(ckpt, weights_only=True)
        del state["digest"]
        torch.save(state, ckpt)
    else:
        torch.save([1, 2, 3], ckpt)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert_one_line_error(status, out, err, msg)


def test_a_full_disk_during_a_checkpoint_is_a_clean_error_with_no_temp_file(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"the first bytes of a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed: No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run"])
    assert_one_line_error(status, out, err, "could not write the checkpoint .*No space left on device.*is the disk full")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"config.json", ".lock"}


@pytest.mark.parametrize("text,msg", [
    ('{"runs": "forward"}', "'runs' must be a list"), ('{"grid": 3}', "'grid' must map"),
    ('{"base": [1, 2]}', "'base' must be an object"), ('{"base": {"steps": "5"}}', r"steps must be an int \(got '5'\)"),
    ('{"base": {"steps": 5.5}}', r"steps must be an int \(got 5.5\)"), ('{"base": {"steps": true}}', r"steps must be an int \(got True\)"),
    ('{"grid": {"lr": [0.001, "fast"]}}', r"config 2 \(lr='fast'\): lr must be a number"),
    ("runs:\n  - {steps: '5'}\n", "steps must be an int"), ("base: {steps: yes}\n", r"got True"),
    ("runs:\n  - {1: 2}\n", "unknown config keys: 1"), ("base: {seed: 2020-01-01}\n", "seed must be an int"),
])
def test_wrongly_typed_sweep_files_are_refused(tmp_path, text, msg):
    spec = tmp_path / ("s.yaml" if not text.startswith("{") else "s.json")
    spec.write_text(text)
    with pytest.raises(TaskError, match=msg):
        load_sweep(str(spec))


@pytest.mark.parametrize("field,value", [("steps", "5"), ("steps", 5.0), ("lr", "0.001"), ("n_test", 64.0),
                                         ("mode", 3), ("compile", 1), ("seed", True)])
def test_papermill_values_of_the_wrong_type_are_refused(field, value):
    from nexttok.chapter import from_parameters

    with pytest.raises(TaskError, match=f"{field} must be"):
        from_parameters(**{field: value})


def test_huge_sizes_are_refused_before_anything_is_allocated():
    started = time.perf_counter()
    for argv, msg in [
        (["generate", "--num-nodes", 300_000_000], "more node labels than the 1,000,000"),
        (["generate", "--deg", 100_000_000], "too small"),
        (["train", "--n-test", 1_000_000_000], "n_test must be in"),
        (["train", "--batch-size", 1_000_000_000], "batch size must be at most"),
        (["train", "--dim", 1_000_000, "--heads", 1], "parameters, more than"),
        (["train", "--layers", 100_000], "layers must be at most"),
        (["train", "--layers", 1000, "--dim", 2048, "--heads", 8], "parameters, more than"),
        (["bench", "--train-steps", 0], "--train-steps must be at least 1"),
        (["bench", "--train-steps=-3"], "--train-steps must be at least 1"),
    ]:
        assert_one_line_error(*run_cli(argv), msg)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("failure", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to "
                 "allocate 1200000000000 bytes."),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes. Error code 12"),
])
def test_a_failed_allocation_is_a_one_line_error_never_a_traceback(monkeypatch, failure):
    from nexttok import cli

    def allocate(*args, **kwargs):
        raise failure

    monkeypatch.setattr(cli, "sample", allocate)
    assert_one_line_error(*run_cli(["generate", "-n", 5]), "out of memory")


def test_any_other_runtime_error_is_still_a_bug_with_its_traceback(monkeypatch):
    from nexttok import cli

    def bug(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(cli, "sample", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_cli(["generate", "-n", 5])


def test_generate_streams_so_a_huge_n_is_bounded_by_the_disk(tmp_path):
    started = time.perf_counter()
    assert_one_line_error(*run_cli(["generate", "-n", 10**12, "-o", "/dev/full"]), "No space left on device")
    assert time.perf_counter() - started < CASE_SECONDS
    # the largest label count there is: a few graphs in little memory
    status, out, err = run_cli(["generate", "--num-nodes", 1_000_000, "-n", 3])
    assert status == 0, err
    assert len(out.splitlines()) == 3


def test_the_sampler_draws_a_large_request_in_chunks_and_a_small_one_at_once(monkeypatch):
    from nexttok import graphs

    task = PathStar(2, 4, 12)
    whole = sample(task, 50, seeded_generator(0, "x"))
    assert torch.equal(whole.edges, graphs._sample(task, 50, seeded_generator(0, "x")).edges)
    assert PathStar(2, 5, 50).rows_per_chunk > 242_016  # the paper's train + test draw is one draw
    monkeypatch.setattr(graphs, "SAMPLE_BYTES", task.sample_bytes * 7)  # 7 graphs at a time
    generator = seeded_generator(0, "x")
    chunked = sample(task, 50, generator)
    again = seeded_generator(0, "x")
    parts = graphs.cat([graphs._sample(task, min(7, 50 - s), again) for s in range(0, 50, 7)])
    assert len(chunked) == 50 and all(torch.equal(a, b) for a, b in zip(chunked._tensors(), parts._tensors()))
    labels = torch.cat([chunked.source[:, None], chunked.arms[:, :, 1:].flatten(1)], dim=1)
    assert (labels.sort(1).values.diff(dim=1) > 0).all()


# ---------------------------------------------------------------------------------------------------------
# 7. More distinct graphs than exist


def brute_force_distinct(task: PathStar, draws: int) -> int:
    return len(torch.unique(sample(task, draws, seeded_generator(0, "all")).keys(), dim=0))


@pytest.mark.parametrize("shape,count", [((2, 3, 5), 120), ((2, 2, 4), 24), ((3, 2, 5), 60), ((1, 3, 4), 24)])
def test_the_distinct_graph_count_matches_a_brute_force_count(shape, count):
    task = PathStar(*shape)
    assert task.distinct_graphs == count == brute_force_distinct(task, 40 * count)
    assert task.has_distinct_graphs(count) and not task.has_distinct_graphs(count + 1)


def test_more_distinct_graphs_than_exist_are_refused_at_once():
    task = PathStar(2, 3, 10)
    assert task.distinct_graphs == 30240
    assert task.has_distinct_graphs(30240) and not task.has_distinct_graphs(30241)
    big = PathStar(50, 20, 1_000_000)
    started = time.perf_counter()
    assert big.has_distinct_graphs(10**8) and time.perf_counter() - started < 0.1  # no million-digit number
    with pytest.raises(TaskError, match="only 30,240 distinct graphs"):
        sample_distinct(task, [30000, 241], seeded_generator(0, "d"))
    started = time.perf_counter()
    status, out, err = run_cli(["train", "--n-train", 100_000, "--num-nodes", 10, "--path-len", 3, "--quiet"])
    assert time.perf_counter() - started < 1
    assert_one_line_error(status, out, err, "has only 30,240 distinct graphs, fewer than n_train \\+ n_test = 102,048")
    with pytest.raises(TaskError, match="distinct graphs"):
        resolve(RunConfig(n_train=100_000, num_nodes=10, path_len=3))


# ---------------------------------------------------------------------------------------------------------
# 8. SIGTERM and SIGHUP


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_to_the_uninterrupted_metrics(tmp_path):
    flags = tiny_flags(steps=40, eval_every=20, ckpt_every=2)
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nexttok", "train", *flags, "--out", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    try:
        deadline = time.time() + 120
        while not (folder / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert re.search(r"interrupted \(SIGTERM\) at step \d+; checkpoint saved", err) and "Traceback" not in err
    assert (folder / "checkpoint.pt").exists() and not (folder / "metrics.json").exists()
    stopped_at = torch.load(folder / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < stopped_at < 40

    status, out, err = run_cli(["train", *flags, "--out", folder, "--resume"], seconds=120)
    assert status == 0, err
    _, straight = train(tiny_config(steps=40, eval_every=20, ckpt_every=2), progress=False)
    resumed = json.loads((folder / "metrics.json").read_text())
    resumed.pop("train_seconds"), straight.pop("train_seconds")
    assert resumed == straight


@pytest.mark.parametrize("signum,status", [(signal.SIGHUP, 129), (signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_graceful_interrupt_exits_128_plus_the_signal_not_2(tmp_path, monkeypatch, signum, status):
    original = Run.train_step

    def interrupted(self):
        if self.step == 2:
            signal.raise_signal(signum)
        return original(self)

    monkeypatch.setattr(Run, "train_step", interrupted)
    got, out, err = run_cli(["train", *TINY, "--out", tmp_path / "run"])
    assert got == status and out == "" and "Traceback" not in err
    assert f"interrupted ({signal.Signals(signum).name}) at step 3; checkpoint saved" in err
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 3


# ---------------------------------------------------------------------------------------------------------
# 9. The smaller ones


@pytest.mark.parametrize("files", [{"notes.txt": "my notes\n"}, {"config.json": '{"experiment": "mine"}\n'},
                                   {"config.json": "not JSON at all"}])
def test_an_out_folder_of_the_users_own_files_is_refused_and_left_untouched(tmp_path, files):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    before = file_hashes(folder)
    status, out, err = run_cli(["train", *TINY, "--out", folder])
    assert_one_line_error(status, out, err, "holds files that are not a run's|config.json is not a run's config")
    assert file_hashes(folder) == before and not (folder / ".lock").exists()


def test_a_resume_with_other_settings_leaves_the_folder_as_it_was(tmp_path):
    interrupted_run(tmp_path / "run")
    before = file_hashes(tmp_path / "run")
    assert_one_line_error(*run_cli(["train", *TINY, "--lr", "0.01", "--out", tmp_path / "run", "--resume"]),
                          r"other settings \(lr\)")
    assert file_hashes(tmp_path / "run") == before  # config.json still this checkpoint's


def test_a_finished_run_of_other_settings_is_not_reported_as_this_one(tmp_path):
    assert run_cli(["train", *TINY, "--out", tmp_path / "run"])[0] == 0
    status, out, _ = run_cli(["train", *TINY, "--out", tmp_path / "run", "--resume"])
    assert status == 0 and json.loads(out)["steps"] == 8  # the same settings: reported
    assert_one_line_error(*run_cli(["train", *TINY, "--seed", "1", "--out", tmp_path / "run", "--resume"]),
                          "holds a finished run of other settings")


def test_a_binary_data_file_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 16)
    (tmp_path / "test.txt").write_text(good_lines(16))
    status, out, err = run_cli(["train", *TINY, "--train-file", tmp_path / "blob.bin", "--test-file",
                                tmp_path / "test.txt", "--out", tmp_path / "run"])
    assert_one_line_error(status, out, err, re.escape(str(tmp_path / "blob.bin")) + ": not a text file")


def test_a_failing_config_in_a_sweep_is_named_and_the_rest_still_run(tmp_path):
    good = {k: v for k, v in tiny_config(steps=4).to_dict().items()}
    (tmp_path / "test.txt").write_text(good_lines(16))
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"base": good, "runs": [
        {"train_file": str(tmp_path / "missing.txt"), "test_file": str(tmp_path / "test.txt")}, {"seed": 1}]}))
    status, out, err = run_cli(["sweep", spec, "--out", tmp_path / "out", "--quiet"], seconds=120)
    assert_one_line_error(status, out, err, r"1 of 2 configs failed; .*results-shard-0-of-1.csv holds the others")
    assert re.search(r"failed: forward G\(2,4\) seed 0 .*missing.txt: cannot read the data file", err)
    assert "wrote" not in err
    from nexttok.records import read_table

    rows = read_table(tmp_path / "out" / "results-shard-0-of-1.csv")
    assert [(r["seed"], r["steps"]) for r in rows] == [(1, 4)]
    # a sweep whose only config fails writes no table and says no "wrote"
    spec.write_text(json.dumps({"base": good, "runs": [
        {"train_file": str(tmp_path / "missing.txt"), "test_file": str(tmp_path / "test.txt")}]}))
    status, out, err = run_cli(["sweep", spec, "--out", tmp_path / "alone", "--quiet"])
    assert_one_line_error(status, out, err, "1 of 1 configs failed:")
    assert "wrote" not in err and "holds the others" not in err
    assert not list((tmp_path / "alone").glob("*.csv"))


def test_resume_of_a_missing_folder_says_so_and_starts_fresh(tmp_path):
    status, out, err = run_cli(["train", *TINY, "--out", tmp_path / "new", "--resume"])
    assert status == 0 and f"nexttok: no run in {tmp_path / 'new'}: starting a new run there" in err
    assert json.loads(out)["steps"] == 8


def test_resume_accepts_another_checkpoint_interval_or_device(tmp_path):
    interrupted_run(tmp_path / "run", step=3)
    status, out, err = run_cli(["train", *tiny_flags(ckpt_every=2, device="auto"), "--out", tmp_path / "run", "--resume"])
    assert status == 0, err
    _, straight = train(tiny_config(), progress=False)
    resumed = json.loads(out)
    resumed.pop("train_seconds"), straight.pop("train_seconds")
    assert resumed == straight


def test_collect_refuses_a_table_that_is_not_a_results_table(tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"base": tiny_config().to_dict()}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results-shard-0-of-1.csv").write_text("a,b\n1,2\n")
    assert_one_line_error(*run_cli(["sweep", spec, "--out", out, "--collect"]), "not a results table")
    (out / "results-shard-0-of-1.csv").write_bytes(bytes(range(256)))
    assert_one_line_error(*run_cli(["sweep", spec, "--out", out, "--collect"]), "not a results table")


# ---------------------------------------------------------------------------------------------------------
# The fuzz table: bad command lines, each refused in one line. Paths in braces are the `world` fixture's.

ARGPARSE, ERROR = "argparse", "error"


def case(kind, name, argv, match=None):
    return pytest.param(kind, argv, match, id=name)


def A(name, *argv, match=None):  # noqa: N802  (the argparse rows)
    return case(ARGPARSE, name, list(argv), match)


def E(name, *argv, match=None):  # noqa: N802  (the one-line-error rows)
    return case(ERROR, name, list(argv), match)


def T(name, *argv, match=None):  # noqa: N802  (a tiny train command with something wrong)
    return case(ERROR, name, ["train", *TINY, "--out", "{scratch}/" + name, *argv], match)


def B(name, *argv, match=None):  # noqa: N802  (a tiny bench command with something wrong)
    return case(ERROR, name, ["bench", *BENCH, *argv], match)


def S(name, filename, text, *argv, match=None):  # noqa: N802  (a sweep file with something wrong)
    return case(ERROR, name, ["sweep", "{sweeps}/" + filename, "--out", "{scratch}/" + name, "--quiet", *argv],
                 match)


SWEEP_FILES = {}


def SF(name, filename, text, *argv, match=None):  # noqa: N802
    SWEEP_FILES[filename] = text
    return S(name, filename, text, *argv, match=match)


GOOD_SWEEP = json.dumps({"base": {"deg": 2, "path_len": 4, "num_nodes": 12, "layers": 1, "dim": 32, "heads": 2,
                                  "steps": 2, "batch_size": 32, "n_test": 64, "device": "cpu"}})
HUGE_GRID = json.dumps({"grid": {"seed": list(range(1000)), "eval_every": list(range(1, 1001)),
                                 "n_eval": list(range(1, 1001))}})
NO_CUDA = not torch.cuda.is_available()

CASES = [
    # argparse: no command, unknown flags, values of the wrong kind, names outside the choices
    A("no-command", match="required"),
    A("unknown-command", "fly", match="invalid choice"),
    A("train-unknown-flag", "train", "--frobnicate", match="unrecognized arguments"),
    A("train-flag-without-value", "train", "--steps", match="expected one argument"),
    A("train-steps-word", "train", "--steps", "five", match="invalid int value"),
    A("train-steps-float", "train", "--steps", "5.5", match="invalid int value"),
    A("train-steps-empty", "train", "--steps", "", match="invalid int value"),
    A("train-n-test-hex", "train", "--n-test", "0x10", match="invalid int value"),
    A("train-num-nodes-3e8", "train", "--num-nodes", "3e8", match="invalid int value"),
    A("train-seed-float", "train", "--seed", "0.5", match="invalid int value"),
    A("train-lr-word", "train", "--lr", "fast", match="invalid float value"),
    A("train-mode-sideways", "train", "--mode", "sideways", match="invalid choice"),
    A("train-model-bert", "train", "--model", "bert", match="invalid choice"),
    A("train-positions-sideways", "train", "--positions", "sideways", match="invalid choice"),
    A("train-device-tpu", "train", "--device", "tpu", match="invalid choice"),
    A("train-precision-fp8", "train", "--precision", "fp8", match="invalid choice"),
    A("train-resume-with-value", "train", "--resume", "yes", match="unrecognized arguments: yes"),
    A("train-compile-with-value", "train", "--compile=1", match="ignored explicit argument"),
    A("generate-num-nodes-3e8", "generate", "--num-nodes", "3e8", match="invalid int value"),
    A("generate-n-1e9", "generate", "-n", "1e9", match="invalid int value"),
    A("generate-train-flag", "generate", "--mode", "forward", match="unrecognized arguments"),
    A("generate-output-without-value", "generate", "-o", match="expected one argument"),
    A("bench-train-steps-word", "bench", "--train-steps", "ten", match="invalid int value"),
    A("bench-eval-every", "bench", "--eval-every", "5", match="unrecognized arguments"),
    A("bench-train-file", "bench", "--train-file", "x.txt", match="unrecognized arguments"),
    A("bench-target-word", "bench", "--to-result", "--target", "high", match="invalid float value"),
    A("sweep-without-file", "sweep", match="required: sweep"),
    A("sweep-unknown-flag", "sweep", "default", "--steps", "5", match="unrecognized arguments"),

    # train: values out of range, impossible tasks, bad combinations
    T("lr-inf", "--lr", "inf", match="lr must be a number"),
    T("lr-nan", "--lr", "nan", match="lr must be a number"),
    T("lr-minus-inf", "--lr=-inf", match="lr must be a number"),
    T("lr-1e30", "--lr", "1e30", match=r"lr must be in \(0, 1\]"),
    T("lr-zero", "--lr", "0", match=r"lr must be in \(0, 1\]"),
    T("lr-negative", "--lr", "-0.001", match=r"lr must be in \(0, 1\]"),
    T("lr-1.5", "--lr", "1.5", match=r"lr must be in \(0, 1\]"),
    T("steps-zero", "--steps", "0", match="steps and batch size must be positive"),
    T("steps-negative", "--steps", "-5", match="steps and batch size must be positive"),
    T("batch-zero", "--batch-size", "0", match="steps and batch size must be positive"),
    T("batch-huge", "--batch-size", "1000000000", match="batch size must be at most"),
    T("dim-not-divisible", "--dim", "30", "--heads", "4", match="not divisible"),
    T("dim-zero", "--dim", "0", match="layers, dim and heads must be positive"),
    T("heads-zero", "--heads", "0", match="layers, dim and heads must be positive"),
    T("layers-zero", "--layers", "0", match="layers, dim and heads must be positive"),
    T("layers-negative", "--layers", "-1", match="layers, dim and heads must be positive"),
    T("dim-huge", "--dim", "1000000", "--heads", "1", match="parameters, more than"),
    T("layers-huge", "--layers", "100000", match="layers must be at most 1024"),
    T("layers-times-dim-huge", "--layers", "1000", "--dim", "4096", "--heads", "8", match="parameters, more than"),
    T("num-nodes-too-small", "--num-nodes", "5", match="num_nodes=5 is too small"),
    T("num-nodes-huge", "--num-nodes", "300000000", match="more node labels than"),
    T("num-nodes-zero", "--num-nodes", "0", match="too small"),
    T("num-nodes-negative", "--num-nodes", "-1", match="too small"),
    T("deg-zero", "--deg", "0", match="degree must be at least 1"),
    T("deg-negative", "--deg", "-3", match="degree must be at least 1"),
    T("deg-huge", "--deg", "100000000", match="too small"),
    T("path-len-one", "--path-len", "1", match="path length must be at least 2"),
    T("path-len-zero", "--path-len", "0", match="path length must be at least 2"),
    T("path-len-huge", "--path-len", str(10**12), match="too small"),
    T("sequence-too-long", "--path-len", "1000", "--num-nodes", "5000", match="the models here read at most 4096"),
    T("n-test-zero", "--n-test", "0", match="n_test must be in"),
    T("n-test-huge", "--n-test", "1000000000", match="n_test must be in"),
    T("n-train-negative", "--n-train", "-1", match="n_train must be in"),
    T("n-train-huge", "--n-train", "1000000000", match="n_train must be in"),
    T("n-train-more-than-exist", "--n-train", "100000", "--num-nodes", "10", "--path-len", "3",
      match="only 30,240 distinct graphs"),
    T("n-train-all-but-test", "--n-train", "12000", "--num-nodes", "8", "--path-len", "3",
      match="distinct graphs, fewer than"),
    T("n-eval-zero", "--n-eval", "0", match="n_eval must be positive"),
    T("eval-every-zero", "--eval-every", "0", match="eval_every and ckpt_every must be positive"),
    T("ckpt-every-zero", "--ckpt-every", "0", match="eval_every and ckpt_every must be positive"),
    T("ckpt-every-negative", "--ckpt-every", "-1", match="eval_every and ckpt_every must be positive"),
    T("min-lr-ratio-2", "--min-lr-ratio", "2", match="min_lr_ratio must be in"),
    T("min-lr-ratio-negative", "--min-lr-ratio", "-0.1", match="min_lr_ratio must be in"),
    T("min-lr-ratio-nan", "--min-lr-ratio", "nan", match="min_lr_ratio must be a number"),
    T("warmup-negative", "--warmup", "-1", match="warmup, weight decay and grad clip"),
    T("weight-decay-negative", "--weight-decay", "-0.1", match="warmup, weight decay and grad clip"),
    T("grad-clip-negative", "--grad-clip", "-1", match="warmup, weight decay and grad clip"),
    T("grad-clip-inf", "--grad-clip", "inf", match="grad_clip must be a number"),
    T("only-position-9", "--only-position", "9", match="only_position must be 0"),
    T("only-position-negative", "--only-position", "-1", match="only_position must be 0"),
    T("mtp-heads-zero", "--mode", "mtp", "--mtp-heads", "0", match="--mtp-heads must be at least 1"),
    T("mtp-heads-negative", "--mode", "mtp", "--mtp-heads", "-2", match="--mtp-heads must be at least 1"),
    T("mtp-heads-forward", "--mtp-heads", "3", "--mode", "forward", match="--mtp-heads is for --mode mtp"),
    T("input-dropout-1.5", "--mode", "dropout", "--input-dropout", "1.5", match="--input-dropout must be in"),
    T("input-dropout-nan", "--mode", "dropout", "--input-dropout", "nan", match="input_dropout must be a number"),
    T("input-dropout-forward", "--input-dropout", "0.5", match="--input-dropout is for --mode dropout"),
    T("diffusion-mamba", "--mode", "diffusion", "--model", "mamba", match="--mode diffusion trains the gpt"),
    T("bst-mamba", "--mode", "bst", "--model", "mamba", match="--mode bst trains the"),
    T("positions-mamba", "--positions", "learned", "--model", "mamba", match="--positions is for the gpt"),
    T("weights-gpt", "--weights", "{scratch}/weights", match="--weights is for the pretrained models only"),
    T("seed-huge", "--seed", str(10**30), match="seed must be in"),
    *([T("device-cuda", "--device", "cuda", match="CUDA is not available")] if NO_CUDA else []),

    # train: data files
    T("train-file-alone", "--train-file", "{train}", match="together"),
    T("test-file-alone", "--test-file", "{test}", match="together"),
    T("train-file-missing", "--train-file", "{scratch}/nope.txt", "--test-file", "{test}",
      match="nope.txt: (no such data file|cannot read)"),
    E("train-file-missing-cache", "train", *TINY, "--train-file", "{scratch}/nope.txt", "--test-file", "{test}",
      match="nope.txt: cannot read the data file"),
    T("train-file-binary", "--train-file", "{binary}", "--test-file", "{test}", match="binary.txt: not a text file"),
    T("test-file-binary", "--train-file", "{train}", "--test-file", "{binary}", match="binary.txt: not a text file"),
    T("train-file-empty", "--train-file", "{empty}", "--test-file", "{test}", match="empty.txt: no graphs"),
    T("train-file-malformed", "--train-file", "{malformed}", "--test-file", "{test}", match="malformed.txt:2: expected"),
    T("train-file-folder", "--train-file", "{folder}", "--test-file", "{test}", match="(it is a folder|Is a directory)"),
    T("train-file-other-shape", "--train-file", "{g23}", "--test-file", "{g23}", match="pass --deg 2 --path-len 3"),
    T("train-test-shapes-differ", "--train-file", "{train}", "--test-file", "{g23}", match="train file is G\\(2,4\\)"),
    T("train-file-labels-too-large", "--train-file", "{n40}", "--test-file", "{test}",
      match="not below num_nodes=12"),
    T("train-file-huge-label", "--train-file", "{huge_label}", "--test-file", "{test}", match="not below num_nodes=12"),
    T("train-file-mixed-shapes", "--train-file", "{mixed}", "--test-file", "{test}", match="earlier lines are"),
    T("train-file-cycle", "--train-file", "{cycle}", "--test-file", "{test}", match="cycle"),
    T("train-file-negative-label", "--train-file", "{negative}", "--test-file", "{test}", match="negative node label"),
    T("train-file-fewer-than-a-batch", "--train-file", "{test}", "--test-file", "{test}", match="fewer than one batch"),

    # train: run folders (none of these may change a byte of them)
    E("out-is-a-file", "train", *TINY, "--out", "{file}", match="is a file, not a folder"),
    E("out-under-a-file", "train", *TINY, "--out", "{file}/run", match="Not a directory"),
    E("out-in-proc", "train", *TINY, "--out", "/proc/nexttok-fuzz/run", match="No such file or directory|denied"),
    E("out-users-notes", "train", *TINY, "--out", "{user_notes}", match="holds files that are not a run's \\(notes.txt\\)"),
    E("out-users-config", "train", *TINY, "--out", "{user_config}", match="config.json is not a run's config"),
    E("out-users-broken-config", "train", *TINY, "--out", "{user_broken_config}", match="config.json is not a run's config"),
    E("out-finished", "train", *TINY, "--out", "{finished}", match="holds a finished run"),
    E("out-finished-resume-other", "train", *TINY, "--lr", "0.01", "--out", "{finished}", "--resume",
      match="finished run of other settings"),
    E("out-unfinished", "train", *TINY, "--out", "{unfinished}", match="already holds a run: pass --resume"),
    E("out-unfinished-resume-other-lr", "train", *TINY, "--lr", "0.01", "--out", "{unfinished}", "--resume",
      match=r"other settings \(lr\)"),
    E("out-unfinished-resume-other-steps", "train", *tiny_flags(steps=12), "--out", "{unfinished}", "--resume",
      match=r"other settings \(steps\)"),
    E("out-locked", "train", *TINY, "--out", "{locked}", "--resume", match="another process is training in"),
    E("ckpt-zero-byte", "train", *TINY, "--out", "{ckpt_zero}", "--resume", match="not a readable checkpoint"),
    E("ckpt-truncated", "train", *TINY, "--out", "{ckpt_truncated}", "--resume", match="not a readable checkpoint"),
    E("ckpt-garbage", "train", *TINY, "--out", "{ckpt_garbage}", "--resume", match="not a readable checkpoint"),
    E("ckpt-text", "train", *TINY, "--out", "{ckpt_text}", "--resume", match="not a readable checkpoint"),
    E("ckpt-byte-flipped", "train", *TINY, "--out", "{ckpt_flipped}", "--resume",
      match="not a readable checkpoint|is corrupt"),
    E("ckpt-tampered", "train", *TINY, "--out", "{ckpt_tampered}", "--resume", match="is corrupt"),
    E("ckpt-missing-key", "train", *TINY, "--out", "{ckpt_no_digest}", "--resume", match="missing digest"),
    E("ckpt-pickle-payload", "train", *TINY, "--out", "{ckpt_payload}", "--resume", match="not a readable checkpoint"),
    E("ckpt-a-list", "train", *TINY, "--out", "{ckpt_list}", "--resume", match="not a nexttok checkpoint"),
    E("ckpt-a-folder", "train", *TINY, "--out", "{ckpt_folder}", "--resume", match="checkpoint.pt: a folder, not a file a run writes"),
    E("ckpt-unknown-config", "train", *TINY, "--out", "{ckpt_future}", "--resume",
      match="holds a config this version cannot read"),

    # generate
    E("generate-n-zero", "generate", "-n", "0", match="-n must be at least 1"),
    E("generate-n-negative", "generate", "-n", "-5", match="-n must be at least 1"),
    E("generate-num-nodes-huge", "generate", "--num-nodes", "300000000", match="more node labels than"),
    E("generate-num-nodes-too-small", "generate", "--num-nodes", "8", match="num_nodes=8 is too small"),
    E("generate-deg-zero", "generate", "--deg", "0", match="degree must be at least 1"),
    E("generate-deg-huge", "generate", "--deg", "100000000", match="too small"),
    E("generate-path-len-one", "generate", "--path-len", "1", match="path length must be at least 2"),
    E("generate-into-missing-folder", "generate", "-o", "{scratch}/no/such/g.txt", match="No such file or directory"),
    E("generate-into-a-folder", "generate", "-o", "{folder}", match="Is a directory"),
    E("generate-under-a-file", "generate", "-o", "{file}/g.txt", match="Not a directory"),
    E("generate-huge-n-full-disk", "generate", "-n", str(10**12), "-o", "/dev/full", match="No space left on device"),

    # bench
    B("bench-train-steps-zero", "--train-steps", "0", match="--train-steps must be at least 1"),
    B("bench-train-steps-negative", "--train-steps", "-3", match="--train-steps must be at least 1"),
    B("bench-train-steps-equals-negative", "--train-steps=-3", match="--train-steps must be at least 1"),
    B("bench-target-1.5", "--to-result", "--target", "1.5", match="--target must be in"),
    B("bench-target-zero", "--to-result", "--target", "0", match="--target must be in"),
    B("bench-target-nan", "--to-result", "--target", "nan", match="--target must be in"),
    B("bench-check-every-zero", "--to-result", "--check-every", "0", match="--check-every at least 1"),
    B("bench-baseline-mamba", "--baseline", "--model", "mamba", "--heads", "1", match="--baseline times"),
    B("bench-dim-not-divisible", "--dim", "30", "--heads", "4", match="not divisible"),
    B("bench-lr-inf", "--lr", "inf", match="lr must be a number"),
    B("bench-num-nodes-huge", "--num-nodes", "300000000", match="more node labels than"),
    B("bench-batch-zero", "--batch-size", "0", match="must be positive"),
    B("bench-mtp-heads-forward", "--mtp-heads", "3", match="--mtp-heads is for --mode mtp"),
    B("bench-diffusion-mamba", "--to-result", "--mode", "diffusion", "--model", "mamba", "--heads", "1",
      match="trains the gpt"),
    *([B("bench-device-cuda", "--device", "cuda", match="CUDA is not available")] if NO_CUDA else []),

    # sweep: files that are not sweeps, malformed JSON and YAML, wrong types, impossible configs, shards
    E("sweep-missing-file", "sweep", "{scratch}/nope.json", match="neither a sweep file nor a named grid"),
    E("sweep-a-folder", "sweep", "{folder}", match="neither a sweep file nor a named grid"),
    E("sweep-where-selects-none", "sweep", "grid", "--where", "deg=9", match="no config of the sweep has deg=9"),
    E("sweep-where-unknown-field", "sweep", "grid", "--where", "sed=1", match="not FIELD=VALUE"),
    SF("sweep-binary", "binary.json", None, match="not a text file"),
    SF("sweep-empty", "empty.json", "", match="not valid JSON"),
    SF("sweep-truncated-json", "truncated.json", '{"grid": ', match="not valid JSON"),
    SF("sweep-empty-list", "empty-list.json", "[]", match="lists no configs"),
    SF("sweep-empty-object", "empty-object.json", "{}", match="a sweep is a list of configs or an object"),
    SF("sweep-a-string", "string.json", '"forward"', match="a sweep is a list"),
    SF("sweep-a-number", "number.json", "42", match="a sweep is a list"),
    SF("sweep-null", "null.json", "null", match="a sweep is a list"),
    SF("sweep-extra-key", "extra.json", '{"base": {}, "extra": 1}', match="a sweep is a list"),
    SF("sweep-runs-a-string", "runs-string.json", '{"runs": "forward"}', match="'runs' must be a list"),
    SF("sweep-runs-of-numbers", "runs-numbers.json", '{"runs": [1, 2]}', match="'runs' must be a list of objects"),
    SF("sweep-grid-a-scalar", "grid-scalar.json", '{"grid": 3}', match="'grid' must map"),
    SF("sweep-grid-value-a-scalar", "grid-value.json", '{"grid": {"seed": 3}}', match="'grid' must map"),
    SF("sweep-grid-empty-list", "grid-empty.json", '{"grid": {"seed": []}}', match="'grid' must map"),
    SF("sweep-base-a-list", "base-list.json", '{"base": [1, 2]}', match="'base' must be an object"),
    SF("sweep-steps-string", "steps-string.json", '{"base": {"steps": "5"}}', match="steps must be an int"),
    SF("sweep-steps-float", "steps-float.json", '{"base": {"steps": 5.5}}', match="steps must be an int"),
    SF("sweep-steps-true", "steps-true.json", '{"base": {"steps": true}}', match="steps must be an int"),
    SF("sweep-unknown-key", "unknown.json", '{"base": {"sed": 1}}', match="unknown config keys: sed"),
    SF("sweep-bad-mode", "mode.json", '{"runs": [{"mode": "sideways"}]}', match="mode must be one of"),
    SF("sweep-lr-infinity", "lr-inf.json", '{"runs": [{"lr": Infinity}]}', match="lr must be a number"),
    SF("sweep-lr-nan", "lr-nan.json", '{"runs": [{"lr": NaN}]}', match="lr must be a number"),
    SF("sweep-duplicate", "duplicate.json", '{"runs": [{}, {}]}', match="the same config appears twice"),
    SF("sweep-huge-grid", "huge-grid.json", HUGE_GRID, match="1,000,000,000 configs, more than"),
    SF("sweep-n-test-huge", "n-test.json", '{"runs": [{"n_test": 1000000000}]}', match="n_test must be in"),
    SF("sweep-num-nodes-huge", "nodes.json", '{"base": {"num_nodes": 300000000}}', match="more node labels"),
    SF("sweep-more-graphs-than-exist", "distinct.json",
       '{"runs": [{"n_train": 100000, "num_nodes": 10, "path_len": 3}]}', match="only 30,240 distinct graphs"),
    SF("sweep-mtp-heads-forward", "mtp.json", '{"grid": {"mtp_heads": [2, 3]}}', match="--mtp-heads is for"),
    SF("sweep-only-failing-config", "failing.json",
       json.dumps({"base": json.loads(GOOD_SWEEP)["base"], "runs": [{"train_file": "nope.txt", "test_file": "nope.txt"}]}),
       match="1 of 1 configs failed"),
    SF("sweep-shard-0-of-0", "good.json", GOOD_SWEEP, "--shard", "0/0", match="n must be at least 1"),
    S("sweep-shard-1-of-0", "good.json", None, "--shard", "1/0", match="n must be at least 1"),
    S("sweep-shard-2-of-2", "good.json", None, "--shard", "2/2", match=r"i must be in 0\.\.1"),
    S("sweep-shard-negative", "good.json", None, "--shard=-1/2", match=r"i must be in 0\.\.1"),
    S("sweep-shard-words", "good.json", None, "--shard", "a/b", match="is not i/n"),
    S("sweep-shard-three-parts", "good.json", None, "--shard", "1/2/3", match="is not i/n"),
    S("sweep-shard-empty", "good.json", None, "--shard", "", match="is not i/n"),
    S("sweep-shard-without-configs", "good.json", None, "--shard", "1/2", match="has no configs"),
    E("sweep-named-grid-bad-shard", "sweep", "paper", "--shard", "0/0", "--out", "{scratch}/paper",
      match="n must be at least 1"),
    S("sweep-collect-nothing", "good.json", None, "--collect", match="no shard tables"),
    SF("yaml-malformed", "malformed.yaml", "grid: [\n", match="not valid YAML"),
    SF("yaml-tabs", "tabs.yaml", "base:\n\tsteps: 5\n", match="not valid YAML"),
    SF("yaml-runs-a-string", "runs.yaml", "runs: forward\n", match="'runs' must be a list"),
    SF("yaml-base-a-list", "base.yaml", "base: [1, 2]\n", match="'base' must be an object"),
    SF("yaml-grid-a-scalar", "grid.yaml", "grid: 3\n", match="'grid' must map"),
    SF("yaml-steps-string", "steps-string.yaml", "base: {steps: '5'}\n", match="steps must be an int"),
    SF("yaml-steps-float", "steps-float.yaml", "base: {steps: 5.5}\n", match="steps must be an int"),
    SF("yaml-steps-yes", "steps-yes.yml", "base: {steps: yes}\n", match=r"steps must be an int \(got True\)"),
    SF("yaml-number-key", "number-key.yaml", "runs:\n  - {1: 2}\n", match="unknown config keys: 1"),
    SF("yaml-lr-inf", "lr-inf.yaml", "base: {lr: .inf}\n", match="lr must be a number"),
    SF("yaml-seed-a-date", "date.yaml", "base: {seed: 2020-01-01}\n", match="seed must be an int"),
    SF("yaml-unhashable-key", "unhashable.yaml", "? [a, b]\n: c\n", match="not valid YAML"),
    SF("yaml-python-object", "object.yaml",
       "runs: !!python/object/apply:os.system ['touch {scratch}/yaml-payload-ran']\n", match="not valid YAML"),
    SF("yaml-a-scalar", "scalar.yaml", "forward\n", match="a sweep is a list"),
]

# random command lines: tiny valid flags, then one or two values that are wrong whatever came before them
GOOD_PAIRS = [("--deg", "2"), ("--path-len", "4"), ("--num-nodes", "12"), ("--layers", "1"), ("--dim", "32"),
              ("--heads", "2"), ("--steps", "8"), ("--batch-size", "32"), ("--n-test", "64"), ("--seed", "3"),
              ("--device", "cpu"), ("--warmup", "2"), ("--lr", "0.01"), ("--precision", "fp32")]
BAD_PAIRS = [("--lr", "inf"), ("--lr", "nan"), ("--lr", "1e30"), ("--lr", "0"), ("--lr", "-1"), ("--steps", "0"),
             ("--steps", "-1"), ("--batch-size", "0"), ("--batch-size", str(10**9)), ("--n-test", "0"),
             ("--n-test", str(10**9)), ("--n-train", "-1"), ("--num-nodes", "3"), ("--num-nodes", str(3 * 10**8)),
             ("--deg", "0"), ("--path-len", "1"), ("--layers", "0"), ("--dim", "0"), ("--heads", "0"),
             ("--min-lr-ratio", "2"), ("--warmup", "-1"), ("--grad-clip", "-1"), ("--only-position", "99"),
             ("--mtp-heads", "2"), ("--input-dropout", "0.3"), ("--seed", str(10**30)), ("--n-eval", "0"),
             ("--dim", str(10**6)), ("--weight-decay", "nan"), ("--steps", "x"), ("--mode", "sideways"),
             ("--dim", "1.5"), ("--model", "nope")]
ARGPARSE_BAD = {("--steps", "x"), ("--mode", "sideways"), ("--dim", "1.5"), ("--model", "nope")}


def random_cases(n: int = 40, seed: int = 0):
    rng = random.Random(seed)
    for number in range(n):
        command = rng.choice(["train", "bench"])
        good = rng.sample(GOOD_PAIRS, rng.randint(0, len(GOOD_PAIRS)))
        bad = rng.sample([p for p in BAD_PAIRS if command == "train" or p[0] != "--n-train"], rng.randint(1, 2))
        argv = [command, *[x for pair in good + bad for x in pair]]
        if command == "train":
            argv += ["--quiet", "--out", f"{{scratch}}/random-{number}"]
        kind = ARGPARSE if set(bad) & ARGPARSE_BAD else ERROR
        yield case(kind, f"random-{number}-{command}-" + "-".join(f"{f[2:]}={v}" for f, v in bad), argv)


CASES += list(random_cases())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder of things the cases must leave alone: a finished and an unfinished run, broken copies of the
    unfinished one, a locked one, folders of a user's own files, data files good and bad, sweep files. The
    cases run with it as the working directory (so a run cache or sweep folder they made would show) and
    write only under scratch/."""
    root = tmp_path_factory.mktemp("world")
    paths = {"scratch": root / "scratch", "sweeps": root / "sweeps"}
    paths["scratch"].mkdir()
    paths["sweeps"].mkdir()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        paths["finished"] = root / "finished"
        train(tiny_config(), paths["finished"], progress=False)
        paths["unfinished"] = root / "unfinished"
        interrupted_run(paths["unfinished"], step=6)
        ckpt = (paths["unfinished"] / "checkpoint.pt").read_bytes()
        state = torch.load(paths["unfinished"] / "checkpoint.pt", weights_only=True)

        def broken(name, write):
            folder = root / name
            shutil.copytree(paths["unfinished"], folder)
            (folder / "checkpoint.pt").unlink()
            write(folder / "checkpoint.pt")
            paths[name] = folder

        def tampered(path):
            s = {k: v for k, v in state.items()}
            s["model"] = {k: v.clone() for k, v in state["model"].items()}
            first = next(iter(s["model"]))
            s["model"][first].view(-1)[0] += 1
            torch.save(s, path)

        def future(path):
            s = {k: v for k, v in state.items() if k != "digest"}
            s["config"] = {**s["config"], "warp_drive": 9}
            torch.save({**s, "digest": state_digest(s)}, path)

        flipped = bytearray(ckpt)
        flipped[len(flipped) // 2] ^= 0xFF
        broken("ckpt_zero", lambda p: p.write_bytes(b""))
        broken("ckpt_truncated", lambda p: p.write_bytes(ckpt[: len(ckpt) // 2]))
        broken("ckpt_garbage", lambda p: p.write_bytes(random.Random(1).randbytes(4096)))
        broken("ckpt_text", lambda p: p.write_text("a checkpoint, honestly\n"))
        broken("ckpt_flipped", lambda p: p.write_bytes(bytes(flipped)))
        broken("ckpt_tampered", tampered)
        broken("ckpt_no_digest", lambda p: torch.save({k: v for k, v in state.items() if k != "digest"}, p))
        broken("ckpt_payload", lambda p: torch.save({**state, "model": Payload(root / "payload-ran")}, p))
        broken("ckpt_list", lambda p: torch.save([1, 2, 3], p))
        broken("ckpt_folder", lambda p: p.mkdir())
        broken("ckpt_future", future)
        paths["locked"] = root / "locked"
        shutil.copytree(paths["unfinished"], paths["locked"])
        for name, files in {"user_notes": {"notes.txt": "my notes\n"},
                            "user_config": {"config.json": '{"experiment": "mine"}\n'},
                            "user_broken_config": {"config.json": "{not json"}}.items():
            paths[name] = root / name
            paths[name].mkdir()
            for filename, text in files.items():
                (paths[name] / filename).write_text(text)

        data = root / "data"
        data.mkdir()
        lines = good_lines(64)
        for name, content in {
            "train": lines, "test": good_lines(16, seed=1), "binary": random.Random(2).randbytes(2048),
            "empty": "", "malformed": lines.splitlines()[0] + "\n1,2|3,4/1,4\n",
            "g23": good_lines(64, task=PathStar(2, 3, 12)), "n40": good_lines(64, task=PathStar(2, 4, 40)),
            "huge_label": "0,5000000000|5000000000,7|7,8|0,1|1,2|2,3/0,8=0,5000000000,7,8\n",
            "mixed": lines.splitlines()[0] + "\n" + good_lines(1, task=PathStar(3, 4, 12)),
            "cycle": "1,2|2,1/1,2=1,2\n", "negative": "-1,2|2,3/-1,3=-1,2,3\n",
        }.items():
            path = data / f"{name}.txt"
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
            paths[name] = path
        paths["folder"] = data / "a-folder"
        paths["folder"].mkdir()
        paths["file"] = data / "a-file"
        paths["file"].write_text("a file\n")
        for filename, text in SWEEP_FILES.items():
            path = paths["sweeps"] / filename
            if text is None:
                path.write_bytes(random.Random(3).randbytes(1024))
            else:
                path.write_text(text.replace("{scratch}", str(paths["scratch"])))

        with open(paths["locked"] / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as if a run were training there
            yield {"root": root, "paths": {k: str(v) for k, v in paths.items()}, "before": file_hashes(root)}
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("kind,argv,match", CASES)
def test_bad_command_line_is_refused_in_one_line(world, kind, argv, match):
    argv = [a.format(**world["paths"]) for a in argv]
    before = file_hashes(world["root"])
    status, out, err = run_cli(argv)
    after = file_hashes(world["root"])
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the case changed what it must leave alone: {changed}"
    (assert_argparse_error if kind == ARGPARSE else assert_one_line_error)(status, out, err, match)


def test_the_fuzz_table_left_every_folder_as_it_was(world):
    assert file_hashes(world["root"]) == world["before"]
    assert not (world["root"] / "payload-ran").exists() and not (world["root"] / "scratch" / "yaml-payload-ran").exists()
    assert not (world["root"] / "runs").exists() and not (world["root"] / "sweeps" / "runs").exists()

