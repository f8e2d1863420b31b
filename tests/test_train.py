import json
import math

import pytest
import torch

from nexttok.config import RunConfig
from nexttok.graphs import TaskError, write_file, sample, seeded_generator
from nexttok.resolve import task_of
from nexttok.train import Run, lr_at, train

from conftest import interrupt_during, tiny_config


def test_lr_schedule_warms_up_then_decays_over_steps():
    cfg = RunConfig(steps=1000, warmup=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5) and lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weight_decay_is_applied_to_matrices_only():
    run = Run(tiny_config(weight_decay=0.3))
    decayed, plain = run.optimizer.param_groups
    assert decayed["weight_decay"] == 0.3 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])
    # with zero gradients AdamW only decays: the matrices shrink by lr * wd, the rest stays
    w, b = decayed["params"][0], plain["params"][0]
    w0, b0 = w.detach().clone(), b.detach().clone()
    for p in run.model.parameters():
        p.grad = torch.zeros_like(p)
    for g in run.optimizer.param_groups:
        g["lr"] = 0.1
    run.optimizer.step()
    assert torch.allclose(w, w0 * (1 - 0.1 * 0.3)) and torch.equal(b, b0)


def test_same_config_same_numbers():
    _, a = train(tiny_config(), progress=False)
    _, b = train(tiny_config(), progress=False)
    a.pop("train_seconds"), b.pop("train_seconds")
    assert a == b
    _, c = train(tiny_config(seed=1), progress=False)
    assert c["tf_loss"] != a["tf_loss"]


@pytest.mark.parametrize("n_train", [0, 96])
def test_interrupted_and_resumed_run_ends_like_a_straight_run(tmp_path, monkeypatch, n_train):
    cfg = tiny_config(steps=12, n_train=n_train)
    straight, _ = train(cfg, tmp_path / "straight", progress=False)

    with interrupt_during(monkeypatch, step=7), pytest.raises(TaskError, match=r"interrupted \(SIGINT\) at step 7; checkpoint saved"):
        train(cfg, tmp_path / "resumed", progress=False)
    with pytest.raises(TaskError, match="already holds a run"):
        train(cfg, tmp_path / "resumed", progress=False)
    resumed, _ = train(cfg, tmp_path / "resumed", resume=True, progress=False)

    load = lambda run: {k: v for k, v in json.loads((tmp_path / run / "metrics.json").read_text()).items() if k != "train_seconds"}  # noqa: E731
    assert load("straight") == load("resumed")
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    # the history, training losses included, is the same too: evaluations at steps 4, 8 and 12
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "resumed" / "history.csv").read_text()
    assert len((tmp_path / "resumed" / "history.csv").read_text().splitlines()) == 1 + 3


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, monkeypatch):
    with interrupt_during(monkeypatch, step=3), pytest.raises(TaskError, match="interrupted"):
        train(tiny_config(steps=6), tmp_path / "run", progress=False)
    with pytest.raises(TaskError, match="other settings \\(lr\\)"):
        train(tiny_config(steps=6, lr=1e-2), tmp_path / "run", resume=True, progress=False)
    # how often it checkpoints and which device runs it are not part of the run: resuming may change them
    train(tiny_config(steps=6, ckpt_every=2), tmp_path / "run", resume=True, progress=False)


def test_fixed_train_set_is_disjoint_from_test():
    run = Run(tiny_config(n_train=200, n_test=100))
    train_keys = run.train_data.graphs.keys()
    both = torch.cat([train_keys, run.test.keys()])
    assert len(torch.unique(both, dim=0)) == 300
    # an epoch visits every graph of the train set at most once
    epoch = torch.cat([run.train_data.batch(s).keys() for s in range(run.train_data.steps_per_epoch)])
    assert len(torch.unique(epoch, dim=0)) == len(epoch) == 6 * 32


def test_training_from_data_files(tmp_path):
    cfg = tiny_config()
    task = task_of(cfg)
    write_file(sample(task, 64, seeded_generator(0, "a")), tmp_path / "train.txt")
    write_file(sample(task, 16, seeded_generator(0, "b")), tmp_path / "test.txt")
    run, metrics = train(tiny_config(train_file=str(tmp_path / "train.txt"), test_file=str(tmp_path / "test.txt")), progress=False)
    assert len(run.test) == 16 and len(run.train_data.graphs) == 64
    with pytest.raises(TaskError, match="pass --deg 2 --path-len 4"):
        Run(tiny_config(deg=3, train_file=str(tmp_path / "train.txt"), test_file=str(tmp_path / "test.txt")))
    with pytest.raises(TaskError, match="together"):
        Run(tiny_config(train_file=str(tmp_path / "train.txt")))


def test_a_tiny_model_learns_the_edge_lookup():
    """A check that the whole loop learns: a tiny forward run fits the look-up "child of the given
    node" at the positions after the first decision, and its loss falls far below chance."""
    cfg = tiny_config(deg=1, path_len=4, num_nodes=10, dim=48, heads=4, layers=2, steps=250, batch_size=64,
                      lr=3e-3, warmup=10, eval_every=250, n_test=256)
    _, metrics = train(cfg, progress=False)
    assert min(metrics["tf_token_accuracy"][2:]) > 0.95, metrics
    assert metrics["tf_loss"] < 0.3 * math.log(14), metrics


@pytest.mark.parametrize("bad,msg", [
    (dict(mode="sideways"), "mode must be one of"), (dict(dim=30, heads=4), "not divisible"),
    (dict(steps=0), "positive"), (dict(num_nodes=5), "too small"), (dict(precision="fp8"), "precision"),
])
def test_bad_configs_are_refused(bad, msg):
    with pytest.raises(TaskError, match=msg):
        tiny_config(**bad)


def test_time_to_result_stops_at_the_first_check_that_reaches_the_target(monkeypatch):
    from nexttok import bench

    accuracies = iter([0.1, 0.5, 0.97, 1.0])
    monkeypatch.setattr(bench.Run, "evaluate", lambda self: {"gen_accuracy": next(accuracies)})
    result = bench.time_to_result(tiny_config(mode="reverse", steps=40), target=0.95, check_every=3)
    assert result["reached"] and result["steps_to_result"] == 9 and result["gen_accuracy"] == 0.97
    assert result["seconds_to_result"] == result["train_seconds"] > 0


@pytest.mark.slow
def test_compiled_training_follows_the_plain_model():
    """--compile changes how the step runs, not what it computes (up to float rounding)."""
    plain, compiled = Run(tiny_config(steps=3)), Run(tiny_config(steps=3, compile=True))
    for _ in range(3):
        assert compiled.train_step().item() == pytest.approx(plain.train_step().item(), rel=1e-4)
    assert tiny_config(compile=True).key() == tiny_config().key(), "the same run, so the same cache entry"
