"""Run records, tables and provenance.

`RunRecord` is the one shape of a finished run: its resolved config, final metrics, history and provenance.
The run cache, the committed results and the tables all return it. A per-position metric is a list in
`metrics` (position i at index i - 1) and a 2-D array in `history` (evaluations x positions); on disk, in
history.csv and in a table's row, it is one column per position (`tf_token_accuracy_1`, ...).
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import FIELDS, RUN_ONLY, RunConfig, TaskError
from .graphs import one_line, require_regular
from .resolve import resolve
from .rundir import write_atomic

# columns of identifiers that may look like numbers (a config hash of digits only, "1234e5678901") and
# must stay text
TEXT_COLUMNS = ("key", "run", "commit")
PROVENANCE = ("command", "commit", "device", "processes", "torch", "date", "wall_seconds")
_POSITION = re.compile(r"(.+)_(\d+)$")


class History(dict):
    """A run's evaluations: metric name -> array over evaluations; a per-position metric is (evaluations, l)."""

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "History":
        columns = list(dict.fromkeys(k for row in rows for k in row))
        out, grouped = cls(), {}
        for name in columns:
            m = _POSITION.match(name)
            if m and f"{m[1]}_1" in columns:
                grouped.setdefault(m[1], []).append(name)
            else:
                out[name] = np.array([_number(row.get(name)) for row in rows], dtype=float)
        for name, cols in grouped.items():
            out[name] = np.array([[_number(row.get(c)) for c in cols] for row in rows], dtype=float).reshape(len(rows), -1)
        return out

    def __len__(self) -> int:
        return len(self["step"]) if "step" in self else 0

    def first_step(self, metric: str, level: float, positions=None) -> int | None:
        """The step of the first evaluation at which `metric` reached `level` (at every one of `positions`,
        1-based, for a per-position metric); None if never."""
        values = self[metric] if positions is None else self[metric][:, [i - 1 for i in positions]].min(1)
        hits = np.nonzero(values >= level)[0]
        return int(self["step"][hits[0]]) if len(hits) else None


def _number(v):
    return math.nan if v is None or v == "" else v


@dataclass
class RunRecord:
    config: RunConfig  # resolved
    metrics: dict
    provenance: dict = field(default_factory=dict)
    history: History | None = None  # None for a row of a committed table (tables keep final metrics only)
    folder: Path | None = None

    @property
    def key(self) -> str:
        return self.config.key()

    def row(self) -> dict:
        """The record as a table's row: run folder, key, config, final metrics (one column per position), provenance."""
        return {"run": self.folder.name if self.folder else "", "key": self.key, **self.config.to_dict(),
                **flatten(self.metrics), **self.provenance}

    @classmethod
    def from_row(cls, row: dict, where: str = "a table") -> "RunRecord":
        """A record from a table's row (no history): config fields, metrics, provenance (a row's "device" is the
        machine that ran it, not the config's device flag)."""
        config = {k: v for k, v in row.items() if k in FIELDS and k not in RUN_ONLY and v is not None}
        try:
            cfg = resolve(RunConfig.from_dict(config, stored=True))
        except TaskError as err:
            raise TaskError(f"{where}: row {row.get('key', '?')} is not a run's config ({err})") from None
        metrics = unflatten({k: v for k, v in row.items() if k not in FIELDS and k not in PROVENANCE + ("run", "key")})
        metrics["steps"] = row.get("steps")  # a column of both the config and the metrics
        return cls(cfg, metrics, {k: row[k] for k in PROVENANCE if k in row}, None,
                   Path(row["run"]) if row.get("run") else None)

    @classmethod
    def load(cls, folder: str | Path) -> "RunRecord":
        """A finished run folder: config.json, metrics.json, history.csv, provenance.json (if any)."""
        folder = Path(folder)
        config = read_json(folder / "config.json")
        try:
            cfg = resolve(RunConfig.from_dict(config, stored=True))
        except TaskError as err:
            raise TaskError(f"{folder}/config.json is not a run's config ({err})") from None
        metrics = read_json(folder / "metrics.json")
        provenance = read_json(folder / "provenance.json") if (folder / "provenance.json").exists() else {}
        return cls(cfg, metrics, provenance, History.from_rows(read_table(folder / "history.csv")), folder)


def read_json(path: Path) -> dict:
    """A run folder's JSON file, or a TaskError that names the file."""
    require_regular(path, "a run")
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TaskError(f"{path}: not a readable run file ({one_line(err, 120)})") from None
    if not isinstance(value, dict):
        raise TaskError(f"{path}: not a run file (not a JSON object)")
    return value


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

    require_regular(path, "a table")
    try:
        with open(path, newline="") as f:
            return [{k: v if k in TEXT_COLUMNS else parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except OSError as err:
        raise TaskError(f"{path}: cannot read the table ({err.strerror})") from None


def flatten(record: dict) -> dict:
    """List values become one column per element, numbered from 1 (target positions)."""
    row = {}
    for k, v in record.items():
        if isinstance(v, list):
            row.update({f"{k}_{i + 1}": x for i, x in enumerate(v)})
        else:
            row[k] = v
    return row


def unflatten(row: dict) -> dict:
    """flatten's inverse: columns name_1..name_l become one list."""
    out, names = {}, set(row)
    for k, v in row.items():
        m = _POSITION.match(k)
        if m and f"{m[1]}_1" in names:
            out.setdefault(m[1], []).append(v)
        else:
            out[k] = v
    return out


def write_table(rows: list[dict], path: str | Path) -> None:
    """rows (flattened) as CSV, written atomically; columns in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(path, write)


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
    defaults = resolve(RunConfig(deg=cfg.deg, path_len=cfg.path_len, num_nodes=cfg.num_nodes, mode=cfg.mode,
                                 model=cfg.model)).to_dict()
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in cfg.to_dict().items() if v != defaults.get(k)]
    task = [f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in ("deg", "path_len", "num_nodes", "mode", "model")
            if getattr(cfg, k) != FIELDS[k].default]
    return " ".join(["nexttok train"] + task + [f for f in flags if f.split()[0] not in {t.split()[0] for t in task}])


def provenance(cfg: RunConfig, device: torch.device, wall_seconds: float, commit: str, world_size: int = 1) -> dict:
    """How a run was produced; `commit` is read when it starts (or resumes), since the tree can change while it trains."""
    return {
        "command": command_line(cfg),
        "commit": commit,
        "device": device_name(device),
        "processes": world_size,
        **made_with(),
        "wall_seconds": round(wall_seconds, 2),
    }


def made_with() -> dict:
    """The torch a result was made with and when (UTC): what every run and probe table records beside its command."""
    return {"torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
