"""The run cache.

A run is its config: its folder is `<root>/<mode>-<config hash>`, so two chapters (or two sweeps) that
need the same run train it once, and a run that was interrupted continues from its checkpoint."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from .config import RunConfig
from .graphs import TaskError
from .records import flatten, read_table
from .train import FolderLocked, Run, train

DEFAULT_ROOT = os.environ.get("NEXTTOK_RUNS", "runs")


def run_dir(cfg: RunConfig, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / f"{cfg.mode}-{cfg.key()}"


def get_run(cfg: RunConfig, root: str | Path = DEFAULT_ROOT, progress: bool = True) -> dict:
    """The run's metrics, history and provenance, training it (or finishing it) first if needed. When another
    process is training the same run (two chapters, two shards), wait for it and take its result."""
    folder = run_dir(cfg, root)
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
    return load_run(folder)


def list_runs(root: str | Path = DEFAULT_ROOT) -> list[dict]:
    """Every finished run in the cache, one flat row each: config, final metrics and provenance."""
    return [flat_row(load_run(metrics.parent)) for metrics in sorted(Path(root).glob("*/metrics.json"))]


def flat_row(run: dict) -> dict:
    """One table row for a loaded run: its folder name, config hash, config, final metrics, provenance."""
    key = RunConfig.from_dict(run["config"]).key()
    return {"run": Path(run["dir"]).name, "key": key, **run["config"], **flatten(run["metrics"]), **run["provenance"]}


def load_trained(folder: str | Path) -> Run:
    """A finished run with its model, optimiser and data set up again from its checkpoint."""
    folder = Path(folder)
    if not (folder / "checkpoint.pt").exists():
        raise TaskError(f"{folder} has no checkpoint.pt (committed results keep none): train the run to inspect its model")
    run = Run(RunConfig.from_dict(json.loads((folder / "config.json").read_text())))
    run.load(folder / "checkpoint.pt")
    return run


def load_run(folder: str | Path) -> dict:
    folder = Path(folder)
    provenance = folder / "provenance.json"
    return {
        "dir": str(folder),
        "config": json.loads((folder / "config.json").read_text()),
        "metrics": json.loads((folder / "metrics.json").read_text()),
        "history": read_table(folder / "history.csv"),
        "provenance": json.loads(provenance.read_text()) if provenance.exists() else {},
    }
