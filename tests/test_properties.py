"""Property-based tests (Hypothesis) over what a hostile user controls: command-line values, sweep documents, the
lines of a data file and the fields of a checkpoint (its digest recomputed, as anyone can). The property is the
CLI's contract: every example ends in a clean refusal (exit status 2, one `nexttok: error:` line, no traceback)
or a correct run (exit 0 and the run's metrics), within CASE_SECONDS, and changes no file outside its own run
folder.

Each example is tallied (refusal, run, traceback, hang, changed files); with NEXTTOK_TALLY=FILE the totals are
written to FILE as JSON at the end. The fast tier draws a few examples per property; NEXTTOK_EXAMPLES=N draws N
(an adversarial pass)."""
from __future__ import annotations

import atexit
import collections
import json
import math
import os
import resource
import shutil
import string
import traceback
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from nexttok.graphs import TaskError, parse_line, read_file  # noqa: E402
from nexttok.rundir import state_digest  # noqa: E402

from conftest import with_flags  # noqa: E402
from test_reliability import TINY, Hang, file_hashes, good_lines, interrupted_run, run_cli  # noqa: E402

EXAMPLES = int(os.environ.get("NEXTTOK_EXAMPLES", "0"))
# torch.set_flush_denormal (a CPU run sets it) leaves no subnormal floats: none is drawn
FAST = settings(max_examples=EXAMPLES or 8, deadline=None, database=None, derandomize=not EXAMPLES,
                suppress_health_check=list(HealthCheck))
HEAVY = settings(FAST, max_examples=EXAMPLES or 25)

TALLY = collections.Counter()


def _write_tally():
    if os.environ.get("NEXTTOK_TALLY") and TALLY:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        totals = {**dict(sorted(TALLY.items())), "peak memory of the process (MiB)": peak}
        Path(os.environ["NEXTTOK_TALLY"]).write_text(json.dumps(totals, indent=2) + "\n")


atexit.register(_write_tally)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files beside every example's run that no example may change: a data file, a finished run, a sweep file."""
    root = tmp_path_factory.mktemp("world")
    (root / "data.txt").write_text(good_lines(32))
    assert run_cli(["train", *TINY, "--out", root / "finished"])[0] == 0
    (root / "sweep.json").write_text('{"grid": {"seed": [0, 1]}}')
    return root


class Scratch:
    """A fresh folder per example (Hypothesis runs many examples in one test call)."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0

    def __call__(self) -> Path:
        self.n += 1
        path = self.root / f"ex{self.n}"
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return Scratch(tmp_path_factory.mktemp("scratch"))


def outcome(argv, world: Path, kind: str) -> str:
    """Run argv through the CLI; classify it; fail on anything but a clean refusal or a correct run."""
    before = file_hashes(world)
    try:
        status, out, err = run_cli(argv)
    except Hang:
        TALLY[f"{kind}: hang"] += 1
        raise
    except BaseException:  # noqa: BLE001 - a traceback: the property fails
        TALLY[f"{kind}: traceback"] += 1
        traceback.print_exc()
        raise
    if file_hashes(world) != before:
        TALLY[f"{kind}: changed files"] += 1
        raise AssertionError(f"{argv} changed files outside its run")
    lines = err.strip().splitlines()
    if status == 0:
        TALLY[f"{kind}: correct run"] += 1
        return "run"
    errors = [line for line in lines if line.startswith(("nexttok: error: ", "nexttok train: error: ",
                                                         "nexttok sweep: error: "))]
    clean = (status == 2 and "Traceback" not in err and out == "" and len(errors) == 1
             and all(line in errors or line.startswith(("  ", "[shard ", "nexttok: ")) for line in lines))
    TALLY[f"{kind}: {'clean refusal' if clean else 'traceback'}"] += 1
    assert clean, (argv, status, err)
    return "refused"


# ---------------------------------------------------------------------------------------------------------
# command-line values

INT_FLAGS = ("deg", "path_len", "num_nodes", "layers", "dim", "heads", "steps", "batch_size", "n_test", "n_train",
             "eval_every", "n_eval", "ckpt_every", "only_position", "warmup")
FLOAT_FLAGS = ("lr", "min_lr_ratio", "weight_decay", "grad_clip")
CHOICE_FLAGS = {"mode": ["forward", "reverse", "teacherless", "mtp"], "device": ["cpu"], "positions": ["rope", "learned"],
                "precision": ["auto", "fp32"], "model": ["gpt", "mamba"]}
# the tiny run's own value of each int flag (valid values beyond it can train for long: they are not drawn)
TINY_VALUES = {"deg": 2, "path_len": 4, "num_nodes": 12, "layers": 1, "dim": 32, "heads": 2, "steps": 8,
               "batch_size": 32, "n_test": 64, "n_train": 0, "eval_every": 4, "n_eval": 64, "ckpt_every": 4,
               "only_position": 0, "warmup": 2}

hostile_int = st.one_of(
    st.integers(-(10 ** 30), 0), st.integers(10 ** 7, 10 ** 40), st.sampled_from(["1e3", "0x10", "٤", "", " ", "1_0"]))
hostile_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False).filter(lambda x: not 0 < x <= 1),
                          st.sampled_from(["nan", "inf", "-inf", "1e999", "0x1p3", "", "one"]))
any_text = st.text(alphabet=string.printable + "٤é\u00a0", max_size=30)


@st.composite
def command_lines(draw):
    """The tiny run's flags with one to three of them replaced by a hostile value, or a valid one of its size."""
    values = {}
    for name in draw(st.lists(st.sampled_from(INT_FLAGS + FLOAT_FLAGS + tuple(CHOICE_FLAGS) + ("seed",)),
                              min_size=1, max_size=3, unique=True)):
        if name in INT_FLAGS:
            values[name] = draw(st.one_of(hostile_int, st.just(TINY_VALUES[name])))
        elif name in FLOAT_FLAGS:
            values[name] = draw(st.one_of(hostile_float, st.floats(1e-4, 1.0, allow_subnormal=False)))
        elif name == "seed":
            values[name] = draw(st.integers(-(2 ** 70), 2 ** 70))
        else:
            values[name] = draw(st.one_of(st.sampled_from(CHOICE_FLAGS[name]), any_text))
    return with_flags(TINY, **values)


@FAST
@given(argv=command_lines())
def test_property_any_command_line_is_refused_cleanly_or_runs(world, scratch, argv):
    out = scratch()
    if outcome(["train", *argv, "--out", out / "run"], world, "cli") == "run":
        assert json.loads((out / "run" / "metrics.json").read_text())["steps"] >= 1
    assert {p.name for p in out.iterdir()} <= {"run"}


# ---------------------------------------------------------------------------------------------------------
# sweep documents

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 20), 10 ** 20), st.floats(allow_nan=False, allow_subnormal=False), any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=12)
fields = st.sampled_from(["seed", "deg", "path_len", "mode", "lr", "steps", "layers", "bogus", "n_test"])
configs = st.dictionaries(fields, json_values, max_size=3)


@st.composite
def sweep_documents(draw):
    doc = draw(st.one_of(
        st.fixed_dictionaries({}, optional={"base": st.one_of(configs, json_values),
                                            "grid": st.one_of(st.dictionaries(fields, st.lists(json_values, max_size=4),
                                                                              max_size=3), json_values),
                                            "runs": st.one_of(st.lists(configs, max_size=4), json_values)}),
        st.lists(configs, max_size=4), json_values))
    return doc


@FAST
@given(doc=sweep_documents(), as_yaml=st.booleans())
def test_property_any_sweep_document_is_refused_cleanly_or_loads(world, scratch, doc, as_yaml):
    out = scratch()
    if as_yaml:
        yaml = pytest.importorskip("yaml")
        spec = out / "s.yaml"
        spec.write_text(yaml.safe_dump(doc))
    else:
        spec = out / "s.json"
        spec.write_text(json.dumps(doc))
    # --collect loads and checks every config, then merges no table: a loaded sweep is refused for having none
    outcome(["sweep", spec, "--collect", "--out", out / "sweep"], world, "sweep")


@FAST
@given(text=st.text(max_size=200))
def test_property_any_sweep_text_is_refused_cleanly(world, scratch, text):
    out = scratch()
    for name in ("s.json", "s.yaml"):
        (out / name).write_text(text)
        outcome(["sweep", out / name, "--collect", "--out", out / "sweep"], world, "sweep")


# ---------------------------------------------------------------------------------------------------------
# data lines

GOOD = good_lines(4).splitlines()


@st.composite
def data_lines(draw):
    """A good line mutated (characters replaced, inserted or dropped), or any text."""
    line = draw(st.sampled_from(GOOD))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(line)))
        action = draw(st.sampled_from(["replace", "insert", "drop"]))
        piece = draw(st.one_of(st.sampled_from(list(",|/=-0123456789") + ["٤", "_", " ", "99999999999", "\x00"]),
                               st.text(max_size=3)))
        line = line[:at] + (piece if action != "drop" else "") + line[at + (action != "insert"):]
    return draw(st.one_of(st.just(line), st.text(max_size=80)))


@FAST
@given(line=data_lines())
def test_property_any_data_line_parses_or_is_refused_by_line(tmp_path_factory, line):
    path = tmp_path_factory.mktemp("line") / "d.txt"
    path.write_text(line + "\n")
    try:
        graphs, task = read_file(path)
    except TaskError as err:
        TALLY["data line: clean refusal"] += 1
        assert str(path) in str(err) and "\n" not in str(err)
        return
    TALLY["data line: correct run"] += 1
    edges, source, goal, answer = parse_line(line)  # a line that reads is one path-star graph, answer included
    assert len(graphs) == 1 and graphs.path[0].tolist() == answer and task.graph_nodes == len(edges) + 1


@HEAVY
@pytest.mark.slow
@given(lines=st.lists(data_lines(), min_size=1, max_size=3))
def test_property_any_data_file_trains_or_is_refused_cleanly(world, scratch, lines):
    out = scratch()
    (out / "train.txt").write_text("\n".join(GOOD * 8 + lines) + "\n")
    (out / "test.txt").write_text("\n".join(lines + GOOD) + "\n")
    outcome(["train", *TINY, "--steps", "2", "--batch-size", "8", "--train-file", out / "train.txt", "--test-file",
             out / "test.txt", "--out", out / "run"], world, "data file")


# ---------------------------------------------------------------------------------------------------------
# checkpoint fields

tensors = st.builds(lambda shape, fill: torch.full(shape, fill), st.lists(st.integers(0, 3), max_size=3),
                    st.floats(allow_nan=True, allow_infinity=True, width=32, allow_subnormal=False))
field_values = st.one_of(json_values, tensors, st.integers(-(2 ** 63), 2 ** 63 - 1),
                         st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupted") / "run"
    interrupted_run(folder)
    return folder


@st.composite
def checkpoint_changes(draw):
    """One to three fields of the checkpoint set to other values: a top-level field, an entry of the history, a
    weight or the optimiser's state."""
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["step", "history", "train_seconds", "loss_sum", "loss_count", "config",
                                      "history entry", "weight", "optimizer", "scaler"]))
        changes.append((where, draw(field_values), draw(st.integers(0, 10 ** 6))))
    return changes


def apply(state: dict, changes) -> None:
    for where, value, pick in changes:
        if where == "history entry" and state["history"] and isinstance(state["history"], list):
            entry = state["history"][pick % len(state["history"])]
            if isinstance(entry, dict) and entry:
                entry[sorted(entry)[pick % len(entry)]] = value
        elif where == "weight" and isinstance(state["model"], dict) and state["model"]:
            state["model"][sorted(state["model"])[pick % len(state["model"])]] = value
        elif where == "optimizer" and isinstance(state["optimizer"], dict):
            moments = list(state["optimizer"].get("state", {}).values())
            if moments and isinstance(moments[0], dict):
                moments[pick % len(moments)]["exp_avg"] = value
            else:
                state["optimizer"] = value
        elif where not in ("history entry", "weight", "optimizer"):
            state[where] = value


@FAST
@given(changes=checkpoint_changes())
def test_property_any_crafted_checkpoint_is_refused_cleanly_or_resumes(world, scratch, interrupted, changes):
    out = scratch()
    run = out / "run"
    shutil.copytree(interrupted, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state.pop("digest")
    apply(state, changes)
    torch.save({**state, "digest": state_digest(state)}, run / "checkpoint.pt")
    if outcome(["train", *TINY, "--out", run, "--resume"], world, "checkpoint") == "run":
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["steps"] == 8 and math.isfinite(metrics["train_seconds"])  # a resumed run ends at its steps
