"""Pretrained Hugging Face models on the task, end to end, on tiny randomly initialised GPT-2 and GPT-NeoX
(Pythia) models saved locally: nothing here reaches a hub."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from nexttok.cli import main
from nexttok.models import PRETRAINED
from nexttok.graphs import TaskError
from nexttok.models import build_model
from nexttok.models.pretrained import save_tiny
from nexttok.objectives import make_view, target_loss
from nexttok.runs import load_trained
from nexttok.tokens import Vocab, prefix_len
from nexttok.train import Run, train

from conftest import interrupt_during, tiny_config

FAMILIES = ["gpt2", "pythia-70m"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """model name -> a folder holding a tiny random model of its family and its tokenizer."""
    root = tmp_path_factory.mktemp("tiny")
    return {model: str(save_tiny(root / model, model)) for model in FAMILIES}


def config(tiny, model="gpt2", **overrides):
    return tiny_config(model=model, weights=tiny[model], **overrides)


def load(tiny, model, task):
    """The wrapped model for conftest's `task` (the `graphs` fixture samples it), and its vocabulary."""
    vocab = Vocab(task.num_nodes)
    return build_model(config(tiny, model), vocab.size, prefix_len(task.num_edges) + task.path_len - 1), vocab


@pytest.mark.parametrize("model", FAMILIES)
def test_the_graph_is_written_as_text_one_pretrained_token_per_task_token(tiny, model, task, graphs):
    from transformers import AutoTokenizer

    lm, vocab = load(tiny, model, task)
    tokenizer = AutoTokenizer.from_pretrained(tiny[model])
    inputs, targets = make_view(graphs, vocab, "forward")
    seq = torch.cat([inputs, targets[:, -1:]], dim=1)
    for row in seq[:4]:  # the tokenizer reads the text of a sequence as exactly the ids the model is fed
        assert tokenizer.encode(" " + vocab.decode(row), add_special_tokens=False) == lm.perm[row].tolist()
    assert len(set(lm.perm.tolist())) == len(lm.perm) == lm.lm.get_output_embeddings().weight.shape[0]
    assert tokenizer.decode(lm.perm[vocab.dummy]).strip() == "$"  # teacherless inputs are the " $" token


@pytest.mark.parametrize("model", FAMILIES)
def test_loss_is_the_full_vocabulary_loss_on_targets_only(tiny, model, task, graphs):
    lm, vocab = load(tiny, model, task)
    lm.eval()
    for mode in ("forward", "teacherless"):
        inputs, targets = make_view(graphs, vocab, mode)
        l = targets.shape[1]
        ours = target_loss(lm(inputs, n_out=l), targets)
        hf_logits = lm.lm(input_ids=lm.perm[inputs]).logits[:, -l:]  # every position, pretrained ids
        assert torch.allclose(ours, F.cross_entropy(hf_logits.flatten(0, 1), lm.perm[targets].flatten()), atol=1e-5)
    # a prediction outside the task's tokens is returned as an id >= vocab.size, so it counts as wrong
    with torch.no_grad():
        lm.lm.get_output_embeddings().bias = torch.nn.Parameter(torch.zeros(len(lm.perm)))
        lm.lm.get_output_embeddings().bias[lm.perm[-1]] = 1e4
    assert (lm(inputs, n_out=l).argmax(-1) == len(lm.perm) - 1).all()
    assert (lm.generate(inputs[:, :prefix_len(graphs.edges.shape[1])], l) >= vocab.size).all()


@pytest.mark.parametrize("model", FAMILIES)
def test_generation_with_the_cache_matches_full_forward_passes(tiny, model, task, graphs):
    lm, vocab = load(tiny, model, task)
    lm.eval()
    prefix = make_view(graphs, vocab, "forward")[0][:, :prefix_len(graphs.edges.shape[1])]
    fast = lm.generate(prefix, 5)
    seq = prefix
    for _ in range(5):  # no cache: the whole sequence again for every new token
        seq = torch.cat([seq, lm(seq, n_out=1)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, seq[:, prefix.shape[1]:])


@pytest.mark.parametrize("model", FAMILIES)
def test_train_evaluate_checkpoint_and_resume(tiny, model, tmp_path, monkeypatch):
    cfg = config(tiny, model, steps=8, mode="forward" if model == "gpt2" else "teacherless")
    straight, metrics = train(cfg, tmp_path / "straight", progress=False)
    assert set(metrics) >= {"gen_accuracy", "gen_token_accuracy", "tf_token_accuracy", "tf_loss",
                            "first_decision_accuracy", "on_some_arm"}
    assert len(metrics["gen_token_accuracy"]) == cfg.path_len and metrics["tf_loss"] > 0
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["weights"] == tiny[model]

    with interrupt_during(monkeypatch, step=5), pytest.raises(TaskError, match=r"interrupted \(SIGINT\) at step 5"):
        train(cfg, tmp_path / "resumed", progress=False)
    resumed, again = train(cfg, tmp_path / "resumed", resume=True, progress=False)
    metrics.pop("train_seconds"), again.pop("train_seconds")
    assert again == metrics
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    reloaded = load_trained(tmp_path / "resumed")  # the checkpoint holds the finetuned weights
    assert torch.equal(reloaded.model.lm.get_input_embeddings().weight, resumed.model.lm.get_input_embeddings().weight)


def test_a_few_steps_lower_the_loss(tiny):
    """The optimiser reaches the pretrained weights: 15 steps take the loss well below its start."""
    run = Run(config(tiny, steps=15, lr=3e-3, warmup=0))
    before = run.evaluate()["tf_loss"]
    while run.step < 15:
        run.train_step()
    assert run.evaluate()["tf_loss"] < before - 1.0


def test_the_weights_field_leaves_old_run_hashes_alone(tiny):
    assert "weights" not in tiny_config().to_dict()  # so runs cached before it existed keep their folder
    assert config(tiny).key() != config(tiny, "pythia-70m").key()


@pytest.mark.parametrize("make,msg", [
    (lambda t, tmp: dict(weights=str(tmp / "missing")), "not a model folder (no config.json)"),
    (lambda t, tmp: dict(weights=str(tmp)), "not a model folder (no config.json)"),
    (lambda t, tmp: dict(weights=_config_only(t, tmp)), "cannot load a model and its tokenizer"),
    (lambda t, tmp: dict(weights=t["pythia-70m"]), "holds a gpt_neox model, not a gpt2"),
    (lambda t, tmp: dict(weights=t["gpt2"], num_nodes=150, deg=2, path_len=4), "cannot write '100' as one token"),
    (lambda t, tmp: dict(weights=None), "pass --weights DIR"),
])
def test_bad_weights_are_a_clear_error(tiny, tmp_path, monkeypatch, make, msg):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub name: its cache only, never the network
    monkeypatch.setitem(PRETRAINED, "gpt2", "nexttok-tests/not-on-any-hub")  # absent even where gpt2 is cached
    with pytest.raises(TaskError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        Run(tiny_config(model="gpt2", **make(tiny, tmp_path)))


def _config_only(tiny, tmp):
    """A folder with a model's config.json and nothing else."""
    (tmp / "partial").mkdir()
    (tmp / "partial" / "config.json").write_text(open(f"{tiny['gpt2']}/config.json").read())
    return str(tmp / "partial")


def test_weights_are_for_pretrained_models_only(tiny):
    with pytest.raises(TaskError, match="--weights is for the pretrained models only"):
        tiny_config(model="gpt", weights=tiny["gpt2"])


@pytest.mark.slow
def test_cli_trains_a_local_gpt2_and_refuses_a_bad_folder(tiny, tmp_path, capsys):
    flags = ["train", "--deg", "2", "--path-len", "4", "--num-nodes", "12", "--steps", "4", "--batch-size", "16",
             "--n-test", "32", "--device", "cpu", "--quiet", "--model", "gpt2"]
    r = subprocess.run([sys.executable, "-m", "nexttok", *flags, "--weights", tiny["gpt2"], "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 4 and (tmp_path / "run" / "checkpoint.pt").exists()
    # in process, to spare a second start of Python: the same main() the command runs
    assert main([*flags, "--weights", str(tmp_path / "nowhere"), "--out", str(tmp_path / "bad")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("nexttok: error: --weights") and len(err.strip().splitlines()) == 1
