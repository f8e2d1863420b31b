"""The command line as a script would drive it: real processes, exit codes and messages."""
import json
import subprocess
import sys

import pytest

from nexttok.cli import main
from nexttok.graphs import read_file


def nexttok(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nexttok", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_generate_writes_the_authors_format(tmp_path):
    out = tmp_path / "g.txt"
    r = nexttok("generate", "--deg", 3, "--path-len", 4, "--num-nodes", 15, "-n", 50, "--seed", 1, "-o", out)
    assert r.returncode == 0, r.stderr
    graphs, task = read_file(out, 15)
    assert len(graphs) == 50 and (task.deg, task.path_len) == (3, 4)
    for seed, same in ((1, True), (2, False)):  # the same seed writes the same graphs (in-process: quicker)
        assert main(["generate", "--deg", "3", "--path-len", "4", "--num-nodes", "15", "-n", "50", "--seed", str(seed),
                     "-o", str(tmp_path / f"{seed}.txt")]) == 0
        assert ((tmp_path / f"{seed}.txt").read_text() == out.read_text()) == same


@pytest.mark.parametrize("args,msg", [
    (["generate", "--deg", 2, "--path-len", 5, "--num-nodes", 8], "num_nodes=8 is too small"),
    (["generate", "--deg", 0], "degree must be at least 1"),
    (["generate", "--path-len", 1], "path length must be at least 2"),
    (["generate", "-n", 0], "-n must be at least 1"),
    (["generate", "-o", "/nonexistent/dir/g.txt"], "No such file or directory"),
    (["train", "--num-nodes", 5, "--steps", 1], "too small"),
    (["train", "--dim", 30, "--heads", 4], "not divisible"),
    (["train", "--mode", "sideways"], "invalid choice"),
    (["train", "--lr", "fast"], "invalid float value"),
    (["train", "--frobnicate"], "unrecognized arguments"),
    (["fly"], "invalid choice"),
])
def test_bad_input_is_a_one_line_error(args, msg, capsys):
    """In-process (the reliability tests run 250 more such cases); one real process below."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    out, err = capsys.readouterr()
    assert status == 2
    assert msg in err and "Traceback" not in err and out == ""


@pytest.mark.slow
def test_a_real_process_exits_2_on_bad_input():
    r = nexttok("train", "--num-nodes", 5, "--steps", 1)
    assert r.returncode == 2 and "too small" in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.slow
def test_malformed_data_file_names_the_line(tmp_path):
    good = nexttok("generate", "--deg", 2, "--path-len", 4, "--num-nodes", 12, "-n", 5).stdout
    (tmp_path / "test.txt").write_text(good)
    (tmp_path / "train.txt").write_text(good + "1,2|3,4/1,4\n" + good)
    r = nexttok("train", "--deg", 2, "--path-len", 4, "--num-nodes", 12, "--train-file", tmp_path / "train.txt",
                "--test-file", tmp_path / "test.txt", "--out", tmp_path / "run")
    assert r.returncode == 2 and "train.txt:6:" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_train_writes_a_run_and_resumes(tmp_path):
    flags = ["--deg", 2, "--path-len", 4, "--num-nodes", 12, "--layers", 1, "--dim", 32, "--heads", 2,
             "--batch-size", 32, "--steps", 6, "--eval-every", 3, "--n-test", 64, "--device", "cpu", "--quiet"]
    r = nexttok("train", *flags, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.json", "history.csv", "checkpoint.pt"} <= files
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert json.loads(r.stdout) == metrics
    assert set(metrics) == {"gen_accuracy", "gen_token_accuracy", "tf_token_accuracy", "tf_loss",
                            "tf_token_loss", "first_decision_accuracy", "on_some_arm", "steps", "train_seconds"}
    assert len(metrics["gen_token_accuracy"]) == len(metrics["tf_token_accuracy"]) == 4 and metrics["steps"] == 6
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dim"] == 32
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("step,lr,train_loss,gen_accuracy,gen_token_accuracy_1")
    again = nexttok("train", *flags, "--out", tmp_path / "run")
    assert again.returncode == 2 and "holds a finished run" in again.stderr
    done = nexttok("train", *flags, "--out", tmp_path / "run", "--resume")  # a finished run: nothing left to do
    assert done.returncode == 0 and json.loads(done.stdout) == metrics


@pytest.mark.slow
def test_bench_json_reports_the_speeds_the_ratios_and_their_ceiling():
    r = nexttok("bench", "--baseline", "--deg", 2, "--path-len", 4, "--num-nodes", 12, "--layers", 1, "--dim", 32,
                "--heads", 2, "--batch-size", 32, "--n-test", 64, "--train-steps", 2, "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    for key in ("train_samples_per_s", "gen_seqs_per_s", "graphs_per_s", "train_flops_per_s", "matmul_flops_per_s",
                "authors_style_graphs_per_s", "train_flops_per_sample",
                "authors_style_train_samples_per_s", "authors_style_gen_seqs_per_s", "gen_vs_authors_style"):
        assert result[key] > 0, key
    assert result["torch"] and result["device"].startswith("cpu")
    # no step runs its FLOPs faster than the machine's dense matmul: the measured ratio stays under its ceiling
    assert 0 < result["train_vs_authors_style"] <= result["train_vs_authors_style_ceiling"]


@pytest.mark.slow
def test_bench_to_result_reports_a_run_that_falls_short():
    r = nexttok("bench", "--to-result", "--deg", 2, "--path-len", 4, "--num-nodes", 12, "--layers", 1, "--dim", 16,
                "--heads", 2, "--batch-size", 16, "--n-test", 32, "--steps", 4, "--check-every", 2, "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["config"]["mode"] == "reverse"  # the time-to-result run is the reverse run unless --mode says
    assert result["steps_trained"] == 4 and result["gen_accuracy"] < 0.95
    assert not result["reached"] and result["steps_to_result"] is None and result["seconds_to_result"] is None
    bad = nexttok("bench", "--to-result", "--target", 1.5)
    assert bad.returncode == 2 and "--target" in bad.stderr
