"""The run cache and each run's provenance.

A run is its config: its folder is `<root>/<mode>-<config hash>`, so two chapters (or two sweeps) that
need the same run train it once, and a run that was interrupted continues from its checkpoint."""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from .config import RunConfig

DEFAULT_ROOT = os.environ.get("NEXTTOK_RUNS", "runs")


def run_dir(cfg: RunConfig, root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(root) / f"{cfg.mode}-{cfg.key()}"


def get_run(cfg: RunConfig, root: str | Path = DEFAULT_ROOT, progress: bool = True) -> dict:
    """The run's metrics, history and provenance, training it (or finishing it) first if needed."""
    folder = run_dir(cfg, root)
    if not (folder / "metrics.json").exists():
        from .train import train

        train(cfg, folder, resume=True, progress=progress)
    return load_run(folder)


def list_runs(root: str | Path = DEFAULT_ROOT) -> list[dict]:
    """Every finished run in the cache, one flat row each: config, final metrics and provenance."""
    return [flat_row(load_run(metrics.parent)) for metrics in sorted(Path(root).glob("*/metrics.json"))]


def flat_row(run: dict) -> dict:
    """One table row for a loaded run: its folder name, config hash, config, final metrics, provenance."""
    key = RunConfig.from_dict(run["config"]).key()
    return {"run": Path(run["dir"]).name, "key": key, **run["config"], **flatten(run["metrics"]), **run["provenance"]}


def first_step(history: list[dict], key: str | list[str], level: float) -> int | None:
    """The step of the first evaluation in a run's history at which `key` (or every key of a list) reached
    `level`; None if never."""
    keys = [key] if isinstance(key, str) else key
    return next((h["step"] for h in history if all(h[k] >= level for k in keys)), None)


def committed_seeds(table: str | Path, cfg: RunConfig) -> dict[int, dict]:
    """The rows of a committed results table (a sweep's CSV) that are `cfg` on some seed, by seed."""
    return {row["seed"]: row for row in read_table(table) if dataclasses.replace(cfg, seed=row["seed"]).key() == row["key"]}


def load_trained(folder: str | Path):
    """A finished run with its model, optimiser and data set up again from its checkpoint."""
    from .train import Run

    folder = Path(folder)
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


def read_table(path: str | Path) -> list[dict]:
    """A CSV written by this package, numbers parsed back."""
    def parse(v: str):
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return None if v == "" else v

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def flatten(record: dict) -> dict:
    """List values become one column per element, numbered from 1 (target positions)."""
    row = {}
    for k, v in record.items():
        if isinstance(v, list):
            row.update({f"{k}_{i + 1}": x for i, x in enumerate(v)})
        else:
            row[k] = v
    return row


def write_table(rows: list[dict], path: str | Path) -> None:
    """rows (flattened) as CSV, written atomically; columns in first-seen order."""
    path = Path(path)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def git_commit() -> str:
    """The commit of the code that ran, '-dirty' when it had uncommitted changes."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def command_line(cfg: RunConfig) -> str:
    """The command that produced a run: the `nexttok` command line when the CLI ran it; from a notebook
    or a script, the `nexttok train` command that reproduces the config."""
    entry = Path(sys.argv[0])
    if entry.name == "nexttok" or (entry.name == "__main__.py" and entry.parent.name == "nexttok"):
        return " ".join(["nexttok"] + sys.argv[1:])
    defaults = RunConfig()
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in cfg.to_dict().items() if v != getattr(defaults, k)]
    return " ".join(["nexttok train"] + flags)


def provenance(cfg: RunConfig, device: torch.device, wall_seconds: float, world_size: int = 1) -> dict:
    return {
        "command": command_line(cfg),
        "commit": git_commit(),
        "device": device_name(device),
        "processes": world_size,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 2),
    }
