"""The run cache.

A run is its config: its folder is `<root>/<mode>-<config hash>`, so two chapters (or two sweeps) that
need the same run train it once, and a run that was interrupted continues from its checkpoint."""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from .config import RunConfig
from .graphs import TaskError
from .records import RunRecord, read_json
from .resolve import resolve
from .rundir import FolderLocked, checkpoint_disagrees, metrics_problem
from .train import Run, train

DEFAULT_ROOT = os.environ.get("NEXTTOK_RUNS", "runs")


def run_name(cfg: RunConfig) -> str:
    """The name of a run's folder in a run cache, which a run that starts from it may give as its init_from."""
    cfg = resolve(cfg)
    return f"{cfg.mode}-{cfg.key()}"


def run_dir(cfg: RunConfig, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / run_name(cfg)


def get_run(cfg: RunConfig, root: str | Path = DEFAULT_ROOT, progress: bool = True) -> RunRecord:
    """The finished run, training it (or finishing it) first if needed. When another process is training the
    same run (two chapters, two shards), wait for it and take its result."""
    cfg = resolve(cfg)
    folder = run_dir(cfg, root)
    for attempt in range(2):
        while not (folder / "metrics.json").exists():
            try:
                train(cfg, folder, resume=True, progress=progress)
            except FolderLocked:
                with open(folder / ".lock", "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)  # returns when the other process is done (or has died)
            except TaskError:
                # another process finished the run after the loop's check and before train() claimed the folder
                # (setting a run up takes seconds): its result is this run's
                if not (folder / "metrics.json").exists():
                    raise
        try:
            record = load_finished(folder, cfg)
        except TaskError as err:
            if attempt:
                raise
            # a finished run of the cache whose files do not parse or were edited: named, and finished again from
            # its last checkpoint (which rewrites its files without training) or refused by name
            print(f"nexttok: {err}: running it again", file=sys.stderr, flush=True)
            (folder / "metrics.json").unlink(missing_ok=True)
            continue
        if cfg.probe_gradients and not record.config.probe_gradients:  # the same run, without what is asked of it
            raise TaskError(f"{folder} was trained without the gradient probe that this run asks for: delete the "
                            "folder to train it again with the probe")
        return record
    raise AssertionError("unreachable")


def load_finished(folder: Path, cfg: RunConfig) -> RunRecord:
    """The finished run of cfg in a run-cache folder, its files checked: config.json is cfg's (and its checkpoint's),
    the metrics are well formed."""
    record = RunRecord.load(folder)
    if record.key != cfg.key():
        raise TaskError(f"{folder}/config.json is not the config of this run (edited by hand?)")
    problem = metrics_problem(record.metrics, cfg)
    if problem:
        raise TaskError(f"{folder}/metrics.json is not this run's metrics ({problem})")
    problem = checkpoint_disagrees(folder, cfg)
    if problem:
        raise TaskError(f"{folder} {problem}")
    return record


def list_runs(root: str | Path = DEFAULT_ROOT) -> list[RunRecord]:
    """Every finished run in the cache (or in a folder of committed run folders)."""
    return [RunRecord.load(metrics.parent) for metrics in sorted(Path(root).glob("*/metrics.json"))]


def load_trained(folder: str | Path) -> Run:
    """A finished run with its model, optimiser and data set up again from its checkpoint."""
    folder = Path(folder)
    if not (folder / "checkpoint.pt").exists():
        raise TaskError(f"{folder} has no checkpoint.pt (committed results keep none): train the run to inspect its model")
    run = Run(RunConfig.from_dict(read_json(folder / "config.json"), stored=True))
    run.load(folder / "checkpoint.pt")
    return run
