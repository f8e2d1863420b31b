"""A run folder's services: the one atomic writer of the package, the folder's lock and what it may hold, the
checkpoint's digest and checks, and the signals that stop a run between two steps.

A run folder is never shared: the process that trains in it holds a lock on it, writes every file under a name
of its own first, and refuses a folder that holds another run or files that are not a run's.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import threading
from pathlib import Path

import torch

from .config import (RUN_NAME, WHAT_TO_START_FROM, RunConfig, TaskError, checkpoint_file, excerpt, file_digest, name_of,
                     start_identity)
from .graphs import irregular, one_line, require_regular

CHECKPOINT_KEYS = ("config", "model", "optimizer", "scaler", "step", "history", "train_seconds", "loss_sum",
                   "loss_count", "digest")
# what a run folder may hold: the run's own files (and their temporary names)
RUN_FILES = ("config.json", "metrics.json", "history.csv", "provenance.json", "checkpoint.pt", ".lock")


class FolderLocked(TaskError):
    """Another process holds the run folder's lock (it is training there)."""


class Interrupted(TaskError):
    """Training stopped on a signal after saving a checkpoint; `signum` says which signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def write_atomic(path: str | Path, write) -> None:
    """`write(tmp)` writes the file under a temporary name of this process's own, then it is renamed into place:
    a reader never sees half a file, an interrupted write leaves the old one, and two processes never share a
    temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


# --- checkpoints ---
def state_digest(state) -> str:
    """A SHA-256 of a checkpoint's contents (every tensor's bytes, every number), in a fixed order."""
    h = hashlib.sha256()

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"tensor{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            for k in sorted(obj, key=repr):
                h.update(repr(k).encode())
                walk(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for x in obj:
                walk(x)
            h.update(b"]")
        else:
            h.update(repr(obj).encode())

    walk(state)
    return h.hexdigest()


def data_digests(cfg: RunConfig) -> dict:
    """The contents' digests of the files a run reads (its data files, the checkpoint it starts from), by field:
    a checkpoint holds them, so a run folder keys its data by contents as the run cache does."""
    return {k: start_identity(v) if k == "init_from" else file_digest(v)
            for k in ("train_file", "test_file", "init_from") if (v := getattr(cfg, k))}


def start_checkpoint(init_from: str, runs: Path | None = None) -> Path:
    """The checkpoint a warm start reads: a checkpoint file, a run folder's, or, for a run's name `<mode>-<key>`
    that is no path here, that run's folder in `runs` (the run cache the new run trains in, where a sweep trains
    the run it starts from). A folder with a run's name must hold that run, finished: the key names its config."""
    path = Path(init_from)
    in_cache = not path.exists() and runs is not None and RUN_NAME.fullmatch(init_from)
    if in_cache:
        path = Path(runs) / init_from
    if RUN_NAME.fullmatch(path.name) and path.is_dir():
        if stored_key(path) != path.name.rpartition("-")[2]:
            raise TaskError(f"--init-from {init_from}: {path}/config.json is not the config of the run {path.name}")
        if not (path / "metrics.json").is_file():
            raise TaskError(f"--init-from {init_from}: the run in {path} has not finished: finish it first")
        if not (path / "checkpoint.pt").is_file():
            raise TaskError(f"--init-from {init_from}: {path} keeps no checkpoint.pt (a committed run keeps none): "
                            "train that run again to start from it")
    checkpoint = Path(checkpoint_file(str(path)))
    if not checkpoint.is_file():
        where = f" (nor in {runs})" if in_cache else ""
        raise TaskError(f"--init-from {init_from}: no checkpoint there{where}; {WHAT_TO_START_FROM}")
    return checkpoint


def changed_files(state: dict, cfg: RunConfig) -> list[str]:
    """The files of cfg whose contents differ from those the checkpoint's run read (none for a checkpoint written
    before checkpoints held them)."""
    saved = state.get("files")
    if not isinstance(saved, dict):
        return []
    now = data_digests(cfg)
    return [f"{k} {getattr(cfg, k)}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]


def save_checkpoint(state: dict, path: Path) -> None:
    """The state with its digest, written atomically."""
    try:
        write_atomic(path, lambda tmp: torch.save({**state, "digest": state_digest(state)}, tmp))
    except RuntimeError as err:  # torch reports a full disk as RuntimeError
        raise OSError(f"could not write the checkpoint {path} ({one_line(err)}); is the disk full?") from None


def read_checkpoint(path: Path, device, model) -> dict:
    """A checkpoint, read as data only (never as code: weights_only), its digest checked, and its weights of
    `model`'s names and shapes."""
    require_regular(path, "a checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated, empty, corrupt, missing or foreign file: torch raises many kinds
        raise TaskError(f"{path} is not a readable checkpoint ({type(err).__name__}: {one_line(err, 200)})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise TaskError(f"{path} is not a nexttok checkpoint (missing {', '.join(missing)})")
    if state_digest({k: v for k, v in state.items() if k != "digest"}) != state["digest"]:
        raise TaskError(f"{path} is corrupt (its contents do not match its digest)")
    mine = model.state_dict()
    weights = state["model"] if isinstance(state["model"], dict) else {}
    wrong = sorted(set(mine) ^ set(weights), key=str) + sorted(
        k for k in set(mine) & set(weights)
        if not isinstance(weights[k], torch.Tensor) or weights[k].shape != mine[k].shape
        or weights[k].dtype != mine[k].dtype)
    if wrong:
        raise TaskError(f"{path} holds weights of another model ({len(wrong)} differ in name or shape, e.g. "
                        f"{one_line(wrong[0], 80)}): the model, its size and the task's vocabulary must match")
    return state


def load_optimizer_state(path: Path, state: dict, optimizer, scaler) -> None:
    """Load a checkpoint's optimiser and loss-scaler states, refused in one line unless they are of this model's
    parameters and shapes (a crafted or foreign state would otherwise fail deep inside the first step)."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            for p in group["params"]:
                for name, value in optimizer.state.get(p, {}).items():
                    if name != "step" and (not isinstance(value, torch.Tensor) or value.shape != p.shape):
                        raise ValueError(f"AdamW's {name} is {excerpt(value, 60)}, not of shape {tuple(p.shape)}")
        scaler.load_state_dict(state["scaler"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as err:
        raise TaskError(f"{path} holds an optimiser state that is not this run's ({one_line(err, 120)}); delete "
                        "it to start over") from None


def read_run_checkpoint(path: Path, device, model, cfg: RunConfig) -> dict:
    """The checkpoint a run resumes from: readable (`read_checkpoint`) and of this run's config (device and
    checkpoint interval aside); a refusal says to delete it to start over."""
    try:
        state = read_checkpoint(path, device, model)
    except TaskError as err:
        raise TaskError(f"{err}; delete it to start over") from None
    try:
        saved = RunConfig.from_dict(state["config"], stored=True)
    except TaskError as err:
        raise TaskError(f"{path} holds a config this version cannot read ({err}); delete it to start over") from None
    changed = changed_files(state, cfg)
    if changed:
        raise TaskError(f"{path}: {', '.join(changed)} changed since this run read it (a run is keyed by its data's "
                        "contents); use another --out, or restore the file")
    if saved.key() != cfg.key():
        mine = cfg.to_dict()
        changed = sorted(k for k in set(state["config"]) | set(mine) if state["config"].get(k) != mine.get(k))
        raise TaskError(f"{path} was written by a run with other settings ({', '.join(changed)}); use another --out")
    problem = progress_problem(state, cfg)
    if problem:
        raise TaskError(f"{path} is not a checkpoint of this run ({problem}); delete it to start over")
    return state


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def progress_problem(state: dict, cfg: RunConfig) -> str | None:
    """What is wrong with a checkpoint's progress for `cfg` (None: nothing): the digest guards against corruption,
    not against a crafted file, so every field is checked for its type and its range. The step is in 0..steps; the
    history holds one well-formed evaluation at each step the run evaluates at, up to the step; the loss summed since
    the last evaluation counts the steps since it; the seconds are a finite number."""
    step, history, count = state["step"], state["history"], state["loss_count"]
    if not _int(step) or not 0 <= step <= cfg.steps:
        return f"step {excerpt(step)} is not in 0..{cfg.steps}"
    if not isinstance(history, list):
        return f"its history is {type(history).__name__}, not a list of evaluations"
    wanted = list(range(cfg.eval_every, step + 1, cfg.eval_every))
    if step == cfg.steps and cfg.steps % cfg.eval_every:
        wanted.append(cfg.steps)
    if len(history) != len(wanted):
        return f"its history holds {len(history)} evaluations, not the {len(wanted)} of {step} steps"
    for entry, at in zip(history, wanted):
        if not isinstance(entry, dict) or entry.get("step") != at or not all(isinstance(k, str) for k in entry):
            return f"its history's evaluation at step {at} is {excerpt(entry, 60)}"
        for k in ("lr", "train_loss", "gen_accuracy"):
            if not _number(entry.get(k)):
                return f"its history's {k} at step {at} is {excerpt(entry.get(k), 60)}"
        for k, v in entry.items():
            if not (_number(v) or v is None or (isinstance(v, list) and all(_number(x) or x is None for x in v))):
                return f"its history's {name_of(k)} at step {at} is {excerpt(v, 60)}"
    if not _int(count) or count != step - (wanted[-1] if wanted else 0):
        return f"loss_count {excerpt(count)} is not the {step - (wanted[-1] if wanted else 0)} steps since the last evaluation"
    for name in ("loss_sum", "train_seconds"):
        v = state[name]
        if not _number(v) or not math.isfinite(v) or (name == "train_seconds" and v < 0):
            return f"{name} {excerpt(v)} is not a finite number" + (" >= 0" if name == "train_seconds" else "")
    return None


# --- signals ---
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def finish_step_on_signal():
    """Ctrl-C (SIGINT), and the SIGTERM / SIGHUP that Slurm, docker and `timeout` send, set a flag instead of
    raising inside a step, so the loop can save a consistent checkpoint after the step it was in, then stop. A
    second signal before that stops at once, keeping the last checkpoint (a step of a huge batch can take a
    minute)."""
    flag = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def stop(signum, _):
        if flag["signum"] is not None:  # a second signal: a step can take long (a huge batch); stop within it
            raise Interrupted(f"interrupted twice ({signal.Signals(signum).name}) within a step; the last checkpoint "
                              "is kept, continue with --resume", signum)
        flag.update(signum=signum)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- the folder ---
@contextlib.contextmanager
def run_folder(out: Path | None, cfg: RunConfig, resume: bool, main: bool):
    """Claim the run folder `out` for this process: lock it, and refuse a folder that another process is
    training in, that holds a finished or other run (unless resuming it), or that holds files a run does not
    write. A refused folder is left as it was (no lock file is added to a folder of someone else's files).
    Yields the checkpoint path (None when there is no folder); the caller writes config.json once it has
    read the checkpoint, so a refused resume leaves the folder's config as it was."""
    if out is None:
        yield None
        return
    ckpt = out / "checkpoint.pt"
    if not main:
        yield ckpt
        return
    if out.exists() and not out.is_dir():
        raise TaskError(f"--out {out} is a file, not a folder")
    check_not_nested(out)
    if out.is_dir():
        check_folder(out, cfg, resume, locked=False)  # a folder of someone's own files gets no lock file
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLocked(f"another process is training in {out}; wait for it or choose another --out") from None
        check_folder(out, cfg, resume, locked=True)
        yield ckpt


def stored_key(folder: Path) -> str | None:
    """The key of the run config in folder/config.json; None when it is not a run's config."""
    try:
        require_regular(folder / "config.json", "a run's config")
        return RunConfig.from_dict(json.loads((folder / "config.json").read_text()), stored=True).key()
    except (ValueError, TaskError, OSError):  # not JSON, not a config, not readable, a data file gone
        return None


def finished_metrics(out: Path, cfg: RunConfig) -> dict | None:
    """The final metrics of the finished run of cfg in `out` (None: no finished run there). A finished run of other
    settings, or one whose files do not parse, is refused by name."""
    if not (out / "metrics.json").is_file():
        return None
    if stored_key(out) != cfg.key():
        raise TaskError(f"{out} holds a finished run of other settings (see its config.json); choose another --out")
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError) as err:
        raise TaskError(f"{out}/metrics.json cannot be read ({one_line(err, 120)}); delete the folder to run it again") from None
    problem = metrics_problem(metrics, cfg)
    if problem:
        raise TaskError(f"{out}/metrics.json is not this run's metrics ({problem}); delete the folder to run it again")
    problem = checkpoint_disagrees(out, cfg)
    if problem:
        raise TaskError(f"{out} {problem}; delete the folder to run it again, or choose another --out")
    return metrics


METRICS = ("gen_accuracy", "gen_token_accuracy", "tf_token_accuracy", "tf_loss", "first_decision_accuracy",
           "on_some_arm", "steps", "train_seconds")


def metrics_problem(metrics, cfg: RunConfig) -> str | None:
    """What is wrong with a finished run's metrics for cfg (None: nothing): every metric of the CLI's contract, a
    number (None where it was not finite), one per target position for a per-position metric, and cfg's steps."""
    if not isinstance(metrics, dict):
        return f"a {type(metrics).__name__}, not an object"
    missing = [k for k in METRICS if k not in metrics]
    if missing:
        return f"no {', '.join(missing)}"
    for k, v in metrics.items():
        if k in ("gen_token_accuracy", "tf_token_accuracy"):
            if not isinstance(v, list) or len(v) != cfg.path_len or not all(_number(x) or x is None for x in v):
                return f"{k} is {excerpt(v, 60)}, not {cfg.path_len} numbers"
        elif not (_number(v) or v is None or (isinstance(v, list) and all(_number(x) or x is None for x in v))):
            return f"{name_of(k)} is {excerpt(v, 60)}"
    if metrics["steps"] != cfg.steps:
        return f"steps {excerpt(metrics['steps'])}, not the run's {cfg.steps}"
    return None


def checkpoint_disagrees(out: Path, cfg: RunConfig) -> str | None:
    """What a finished run's checkpoint (when it has one) says against its other files: a config.json edited since
    (the checkpoint holds the config it trained with), or data files whose contents changed. Reads the checkpoint's
    small fields only (mapped, weights_only)."""
    ckpt = out / "checkpoint.pt"
    if not ckpt.is_file():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        saved = RunConfig.from_dict(state["config"], stored=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        return f"holds a checkpoint that cannot be read ({type(err).__name__}: {one_line(err, 120)})"
    if saved.key() != cfg.key():
        mine = cfg.to_dict()
        edited = sorted(k for k in set(state["config"]) | set(mine) if state["config"].get(k) != mine.get(k))
        return (f"holds a finished run whose checkpoint was trained with other settings ({', '.join(edited)[:120]}) "
                "than its config.json says: the files were edited")
    changed = changed_files(state, cfg)
    if changed:
        return f"holds a finished run of other data: {', '.join(changed)} changed since it ran"
    return None


def enclosing_run(out: Path) -> Path | None:
    """The run folder that `out` would be inside (a folder above it holding a run's checkpoint or metrics, or a
    run's config beside a lock); None when there is none."""
    for folder in Path(os.path.abspath(out)).parents:
        if any((folder / name).is_file() for name in ("checkpoint.pt", "metrics.json")) or (
                (folder / ".lock").is_file() and stored_key(folder) is not None):
            return folder
    return None


def check_not_nested(out: Path) -> None:
    """Refuse a run folder inside another run's folder: the outer run could no longer be resumed (it would hold a
    folder that is not its own)."""
    outer = enclosing_run(out)
    if outer is not None:
        raise TaskError(f"--out {out} is inside the run folder {outer}; a run cannot hold another (choose a folder "
                        "outside it)")


def check_folder(out: Path, cfg: RunConfig, resume: bool, locked: bool) -> None:
    """Refuse a folder that holds files a run does not write, a config.json that is not a run's, or a finished
    run; once the folder is locked (no other process is training in it), also a run to continue without
    --resume, or a run of another config that stopped before its first checkpoint."""
    ckpt = out / "checkpoint.pt"
    for name in RUN_FILES:  # a FIFO named checkpoint.pt or .lock would block the run that opens it
        kind = irregular(out / name)
        if kind:
            raise TaskError(f"--out {out}: {name}: {kind}, not a file a run writes; refusing to read it (choose "
                            "another --out)")
    names = {p.name for p in out.iterdir()}
    foreign = sorted(n for n in names if n not in RUN_FILES and not n.endswith(".tmp"))
    if not {"checkpoint.pt", "metrics.json"} & names:
        # a run writes history.csv and provenance.json after its last checkpoint: without one they are not its
        foreign += sorted(names & {"history.csv", "provenance.json"})
    if foreign:
        raise TaskError(f"--out {out} holds files that are not a run's ({', '.join(foreign[:5])}); choose an "
                        "empty or new folder")
    if (out / "metrics.json").exists():  # written last, so no process is training here any more
        raise TaskError(f"{out} holds a finished run (--resume reports it); choose another --out for a new one")
    # a config.json beside no checkpoint: the user's own file, or a run that stopped before its first checkpoint
    # (beside a checkpoint, the checkpoint's own config is checked when it is loaded)
    if (out / "config.json").exists() and not ckpt.exists():
        theirs = stored_key(out)
        if theirs is None:
            raise TaskError(f"{out}/config.json is not a run's config; choose another --out")
        if locked and theirs != cfg.key():
            raise TaskError(f"{out}/config.json is not this run's config; choose another --out")
    if locked and ckpt.exists() and not resume:
        raise TaskError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
