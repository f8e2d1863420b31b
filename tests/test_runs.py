"""The run cache (nexttok.runs): a run is its config; it is trained once, found again, and shared."""
import pytest

from nexttok.graphs import TaskError
from nexttok.runs import get_run, list_runs, load_trained, run_dir

from conftest import tiny_config


def test_a_run_is_trained_once_and_found_by_its_config(tmp_path):
    cfg = tiny_config(steps=4, eval_every=2)
    first = get_run(cfg, tmp_path, progress=False)
    folder = run_dir(cfg, tmp_path)
    assert folder.name == f"forward-{cfg.key()}" and first.folder == folder
    stamp = (folder / "metrics.json").stat().st_mtime_ns
    again = get_run(cfg, tmp_path, progress=False)  # from the cache: nothing is trained or written
    assert again.metrics == first.metrics and (folder / "metrics.json").stat().st_mtime_ns == stamp
    runs = list_runs(tmp_path)
    assert len(runs) == 1 and runs[0].key == cfg.key() and runs[0].metrics == first.metrics
    assert runs[0].history["step"].tolist() == [2, 4] and runs[0].history["tf_token_accuracy"].shape == (2, 4)
    trained = load_trained(folder)
    assert trained.step == 4 and trained.cfg.key() == cfg.key()


def test_a_run_without_a_checkpoint_cannot_be_inspected(tmp_path):
    cfg = tiny_config(steps=2, eval_every=2)
    folder = run_dir(cfg, tmp_path)
    get_run(cfg, tmp_path, progress=False)
    (folder / "checkpoint.pt").unlink()  # as the committed results are kept
    with pytest.raises(TaskError, match="no checkpoint.pt"):
        load_trained(folder)


def test_the_run_cache_waits_for_a_run_another_process_is_training(tmp_path):
    """Two chapters (or shards) asking the cache for one run: the second waits for the first and takes its result
    instead of failing or training it twice."""
    import fcntl
    import threading
    import time

    cfg = tiny_config(steps=4, eval_every=2)
    folder = run_dir(cfg, tmp_path)
    folder.mkdir(parents=True)
    holder = open(folder / ".lock", "a")
    fcntl.flock(holder, fcntl.LOCK_EX)  # "another process" is training this run
    result = {}
    waiter = threading.Thread(target=lambda: result.update(run=get_run(cfg, tmp_path, progress=False)))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and not (folder / "metrics.json").exists(), "it waits while the other holds the lock"
    holder.close()  # the other process is done (here: it died without finishing), so the waiter trains the run
    waiter.join(timeout=120)
    assert not waiter.is_alive() and result["run"].metrics["steps"] == 4


def test_a_run_another_process_finishes_while_this_one_sets_up_is_taken_not_refused(tmp_path, monkeypatch):
    """The cache checks for metrics.json, then sets the run up (seconds) before it claims the folder: a process that
    finishes the same run in between (two chapters side by side under pytest-xdist) leaves a finished run, which
    the cache takes instead of failing on it."""
    import nexttok.runs as runs

    cfg = tiny_config(steps=2, eval_every=2)
    real_train, calls = runs.train, []

    def the_other_process_finishes_first(cfg, folder, **kwargs):
        calls.append(folder)
        real_train(cfg, folder, resume=True, progress=False)  # the other process, done before this one claims it
        return real_train(cfg, folder, **kwargs)  # this one: the folder now holds a finished run

    monkeypatch.setattr(runs, "train", the_other_process_finishes_first)
    run = get_run(cfg, tmp_path, progress=False)
    assert len(calls) == 1 and run.metrics["steps"] == 2
    # a refusal that is not a finished run still reaches the caller
    other = tiny_config(steps=2, eval_every=2, seed=1)
    run_dir(other, tmp_path).mkdir(parents=True)
    (run_dir(other, tmp_path) / "notes.txt").write_text("mine")
    monkeypatch.setattr(runs, "train", real_train)
    with pytest.raises(TaskError, match="holds files that are not a run's"):
        get_run(other, tmp_path, progress=False)


@pytest.mark.parametrize("mode", ["forward", "teacherless", "mtp", "diffusion", "bst"])
def test_the_gradient_probe_changes_no_run(tmp_path, mode):
    """The probe measures without moving the weights, so a probed run is the unprobed run (one key, one folder):
    the chapters ask for it and share one forward run."""
    plain, probed = tiny_config(mode=mode, layers=2), tiny_config(mode=mode, layers=2, probe_gradients=True)
    assert probed.key() == plain.key()
    with_probe = get_run(probed, tmp_path / "a", progress=False)
    without = get_run(plain, tmp_path / "b", progress=False)
    drop = ("train_seconds",)
    assert {k: v for k, v in with_probe.metrics.items() if k not in drop} == \
           {k: v for k, v in without.metrics.items() if k not in drop}
    assert "grad_norm_by_position" in with_probe.history and "grad_norm_by_position" not in without.history
    assert get_run(plain, tmp_path / "a", progress=False).metrics == with_probe.metrics  # a probed run serves both


def test_a_run_asked_for_with_the_probe_refuses_a_cached_run_without_it(tmp_path):
    plain = tiny_config(steps=2, eval_every=2)
    get_run(plain, tmp_path, progress=False)
    with pytest.raises(TaskError, match="without the gradient probe"):
        get_run(tiny_config(steps=2, eval_every=2, probe_gradients=True), tmp_path, progress=False)
