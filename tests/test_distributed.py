"""Data-parallel training with torchrun: 2 CPU processes over gloo against one process."""
import os
import signal
import subprocess
import sys
import time

import pytest

from nexttok.records import RunRecord

pytestmark = pytest.mark.slow  # the slow tier: `make test` runs it, `make test-fast` does not

FLAGS = ["--deg", "2", "--path-len", "4", "--num-nodes", "12", "--layers", "1", "--dim", "32", "--heads", "2",
         "--batch-size", "32", "--warmup", "2", "--eval-every", "1", "--ckpt-every", "4", "--n-test", "64", "--device", "cpu",
         "--quiet"]


def nexttok(*args, procs=1, wait=True):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] if procs > 1 else [sys.executable]
    cmd = launcher + ["-m", "nexttok", "train", *FLAGS, *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.parametrize("n_train", [0, 320])
def test_two_processes_follow_the_single_process_loss_curve(tmp_path, n_train):
    nexttok("--steps", 8, "--n-train", n_train, "--out", tmp_path / "one")
    r = nexttok("--steps", 8, "--n-train", n_train, "--out", tmp_path / "two", procs=2)
    assert r.stdout.count("gen_accuracy") == 1  # one rank reports
    one, two = RunRecord.load(tmp_path / "one"), RunRecord.load(tmp_path / "two")
    assert two.provenance["processes"] == 2 and one.provenance["processes"] == 1
    # the same global batches, so the same curve up to the order of float additions in the all-reduce
    assert len(one.history) == len(two.history) == 8
    for metric in ("train_loss", "tf_loss"):
        assert two.history[metric] == pytest.approx(one.history[metric], rel=1e-4)
    assert one.history["train_loss"][-1] < one.history["train_loss"][0]  # it did train
    # only rank 0 wrote, and only the run's own files (and the lock it held on the folder)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        ".lock", "checkpoint.pt", "config.json", "history.csv", "metrics.json", "provenance.json"]


def test_killed_two_process_run_resumes_to_the_same_metrics(tmp_path):
    straight = tmp_path / "straight"
    nexttok("--steps", 40, "--out", straight, procs=2)
    killed = tmp_path / "killed"
    proc = nexttok("--steps", 40, "--out", killed, procs=2, wait=False)
    deadline = time.time() + 240
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, with no chance to save
    proc.wait()
    assert (killed / "checkpoint.pt").exists() and not (killed / "metrics.json").exists()
    nexttok("--steps", 40, "--out", killed, "--resume", procs=2)
    a, b = RunRecord.load(straight), RunRecord.load(killed)
    assert a.metrics | {"train_seconds": 0} == b.metrics | {"train_seconds": 0}
    assert a.history["train_loss"].tolist() == b.history["train_loss"].tolist()
