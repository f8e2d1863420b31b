"""`nexttok sweep`: run a list of configs and write one results table, with provenance per row.

A sweep is a JSON (or YAML, when PyYAML is installed) file, or a named grid:
    {"base": {"layers": 2, "dim": 96}, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1, 2]}}
    {"runs": [{"mode": "forward"}, {"mode": "reverse", "lr": 1e-3}]}
(both keys may be given; "grid" takes every combination, "runs" lists configs one by one, each on top
of "base"). `--shard i/n` runs configs i, i+n, i+2n, ... (i from 0), so n processes, a Slurm array or n
torchrun jobs cover a sweep between them; every finished run lives in the run cache, so a killed shard
restarts where it stopped. `--collect` merges the shards' tables into one, refusing duplicates and
naming the configs no shard has finished.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from .config import RunConfig
from .graphs import TaskError
from .runs import flat_row, get_run, read_table, write_table

# The paper's G(2,5) setting (PAPER.md): the authors' model and data; forward, reverse and teacherless.
# 20,000 steps is 25 epochs of 200,000 graphs at batch 256 (the authors' epoch count is not given in
# PAPER.md); needs a GPU.
PAPER = {"base": {"deg": 2, "path_len": 5, "num_nodes": 50, "layers": 6, "dim": 384, "heads": 6, "batch_size": 256,
                  "lr": 1e-4, "n_train": 200_000, "n_test": 20_000, "steps": 20_000, "warmup": 500, "eval_every": 1000,
                  "ckpt_every": 1000},
         "grid": {"mode": ["forward", "reverse", "teacherless"]}}
# The README's headline at the default CPU scale, on five seeds.
DEFAULT = {"base": {}, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1, 2, 3, 4]}}
# Degree x path length at the default CPU scale, forward and reverse (about half an hour on 2 cores): the grid
# chapter's committed table.
GRID = {"base": {}, "grid": {"deg": [2, 3], "path_len": [3, 4, 5], "mode": ["forward", "reverse"]}}
# Mamba on 2 CPU cores, each run under 10 minutes: at the GPT's width 96 / batch 256 a Mamba step costs 8x a
# GPT step (nexttok bench --model mamba), so width 64, batch 128. Its lr is 6e-3: at the GPT's 2e-3 a reverse
# run had reached only 0.05 generation accuracy after 2000 steps (10 min), at 6e-3 it passed 0.99 by step 1000.
# Reverse and forward on seeds 0-2, and one teacherless run: the Mamba chapter's committed runs.
MAMBA = {"base": {"model": "mamba", "dim": 64, "batch_size": 128, "lr": 6e-3, "steps": 1500},
         "grid": {"seed": [0, 1, 2], "mode": ["reverse", "forward"]},
         "runs": [{"mode": "teacherless"}]}
# Position 2 trained alone (only_position=2) at the default CPU scale, on the seeds of the headline table:
# the indecipherable chapter sets each beside the full forward run of the same seed.
INDECIPHERABLE = {"base": {"only_position": 2}, "grid": {"seed": [0, 1, 2, 3, 4]}}
# Teacherless G(2,3) with 3000 steps, the smallest setting found where teacherless training learns on 2 CPU
# cores (at 1200 steps it does not), on three seeds: the teacherless chapter's committed table.
TEACHERLESS = {"base": {"mode": "teacherless", "path_len": 3, "steps": 3000, "eval_every": 50}, "grid": {"seed": [0, 1, 2]}}
# G(3,5) at lr 1e-3 and 2000 steps (`make degree3`'s GPT recipe; at lr 2e-3 degree 3 sits on a plateau for
# thousands of steps), forward and reverse on seeds 0-2.
DEGREE3 = {"base": {"deg": 3, "lr": 1e-3, "steps": 2000}, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1, 2]}}
NAMED = {"paper": PAPER, "default": DEFAULT, "grid": GRID, "mamba": MAMBA, "indecipherable": INDECIPHERABLE,
         "teacherless": TEACHERLESS, "degree3": DEGREE3}


def load_sweep(spec: str) -> list[RunConfig]:
    """The configs of a named grid or a sweep file, in a fixed order."""
    if spec in NAMED:
        data = NAMED[spec]
    else:
        path = Path(spec)
        if not path.is_file():
            raise TaskError(f"{spec}: neither a sweep file nor a named grid ({', '.join(NAMED)})")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml  # optional: JSON needs nothing extra

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except ImportError:
            raise TaskError(f"{spec}: reading YAML needs PyYAML (pip install pyyaml), or write the sweep as JSON") from None
        except Exception as err:  # the parsers' own errors name line and column
            raise TaskError(f"{spec}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {err}") from None
    if isinstance(data, list):
        data = {"runs": data}
    if not isinstance(data, dict) or not set(data) <= {"base", "grid", "runs"} or not data:
        raise TaskError(f"{spec}: a sweep is a list of configs or an object with 'base', 'grid' and/or 'runs'")
    base, grid = data.get("base", {}), data.get("grid", {})
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    if not grid and "runs" not in data:
        combos = [{}]
    combos += list(data.get("runs", []))
    configs = [RunConfig.from_dict({**base, **combo}) for combo in combos]
    keys = [c.key() for c in configs]
    if len(set(keys)) != len(keys):
        raise TaskError(f"{spec}: the same config appears twice")
    return configs


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise TaskError(f"--shard {text!r} is not i/n (e.g. 0/4)") from None
    if not 0 <= i < n:
        raise TaskError(f"--shard {text}: i must be in 0..{n - 1}")
    return i, n


def shard_table(out: Path, i: int, n: int) -> Path:
    return out / f"results-shard-{i}-of-{n}.csv"


def run_sweep(configs: list[RunConfig], out: str | Path, shard: tuple[int, int] = (0, 1), progress: bool = True) -> Path:
    """Train (or take from the cache) this shard's configs; rewrite the shard's table after each run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    i, n = shard
    mine = configs[i::n]
    table = shard_table(out, i, n)
    rows = []
    for number, cfg in enumerate(mine, 1):
        if progress:
            print(f"[shard {i}/{n}] run {number}/{len(mine)}: {cfg.mode} G({cfg.deg},{cfg.path_len}) seed {cfg.seed} "
                  f"({cfg.key()})", flush=True)
        rows.append(flat_row(get_run(cfg, out / "runs", progress=progress)))
        write_table(rows, table)
    return table


def collect(configs: list[RunConfig], out: str | Path) -> tuple[Path, list[RunConfig]]:
    """Merge every shard table in `out` into out/results.csv, in sweep order. Raises TaskError on a
    config that two tables both hold; returns the table and the configs no table holds."""
    out = Path(out)
    tables = sorted(out.glob("results-shard-*.csv"))
    if not tables:
        raise TaskError(f"{out}: no shard tables (results-shard-*.csv) to collect")
    seen: dict[str, tuple[dict, Path]] = {}
    for table in tables:
        for row in read_table(table):
            if row["key"] in seen and seen[row["key"]][1] != table:
                raise TaskError(f"config {row['key']} is in both {seen[row['key']][1].name} and {table.name}")
            seen[row["key"]] = (row, table)
    wanted = [c.key() for c in configs]
    strangers = sorted(set(seen) - set(wanted))
    if strangers:
        raise TaskError(f"{out} holds results of configs that are not in this sweep: {', '.join(strangers)}")
    merged = out / "results.csv"
    write_table([seen[k][0] for k in wanted if k in seen], merged)
    return merged, [c for c in configs if c.key() not in seen]
