"""Tables and provenance: the CSVs a run and a sweep write, and the record of how each was produced.

This room sits below the training loop (train.py writes a run's history and provenance with it) and below
the run cache (runs.py), so neither imports the other to reach it.
"""
from __future__ import annotations

import csv
import datetime
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from .config import RunConfig


# columns of identifiers that may look like numbers (a config hash of digits only, "1234e5678901") and
# must stay text
TEXT_COLUMNS = ("key", "run", "commit")


def read_table(path: str | Path) -> list[dict]:
    """A CSV written by this package, numbers parsed back (but not in TEXT_COLUMNS)."""
    def parse(v):
        if not isinstance(v, str):  # a short row's missing cells (None), a long row's extra cells (a list)
            return v
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return None if v == "" else v

    with open(path, newline="") as f:
        return [{k: v if k in TEXT_COLUMNS else parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


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
    """rows (flattened) as CSV, written atomically (a temporary name unique to this process, then a
    rename); columns in first-seen order."""
    path = Path(path)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def finite_json(value):
    """A metrics value with every non-finite float replaced by None, so the JSON it becomes is strict
    (json.dumps would write a bare NaN, which strict parsers reject)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value


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
    defaults = RunConfig(deg=cfg.deg, path_len=cfg.path_len, num_nodes=cfg.num_nodes, mode=cfg.mode,
                         model=cfg.model).to_dict()
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in cfg.to_dict().items() if v != defaults.get(k)]
    task = [f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in ("deg", "path_len", "num_nodes", "mode", "model")
            if getattr(cfg, k) != getattr(RunConfig, k)]
    return " ".join(["nexttok train"] + task + [f for f in flags if f.split()[0] not in {t.split()[0] for t in task}])


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
