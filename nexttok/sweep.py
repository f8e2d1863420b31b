"""`nexttok sweep`: run a list of configs and write one results table, with provenance per row.

A sweep is a JSON (or YAML, when PyYAML is installed) file, or a named grid:
    {"base": {"layers": 2, "dim": 96}, "grid": {"mode": ["forward", "reverse"], "seed": [0, 1, 2]}}
    {"runs": [{"mode": "forward"}, {"mode": "reverse", "lr": 1e-3}]}
(both keys may be given; "grid" takes every combination, "runs" lists configs one by one, each on top
of "base"). `--shard i/n` runs configs i, i+n, i+2n, ... (i from 0), so n processes, a Slurm array or n
torchrun jobs cover a sweep between them; every finished run lives in the run cache, so a killed shard
restarts where it stopped. `--collect` merges the shards' tables into one, refusing duplicates and
naming the configs no shard has finished. `--where FIELD=VALUE` keeps the configs whose field has that
value, so one part of a named sweep (`nexttok sweep grid --where deg=4`) runs and collects on its own.
A row's `init_from` may be a config: the row starts from that run's weights (a curriculum's next stage), which
the sweep trains first and which the row's key names as `<mode>-<key>`:
    {"runs": [{"mode": "hybrid", "path_len": 4, "init_from": {"mode": "hybrid", "path_len": 3}}]}
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from pathlib import Path

from .config import FIELDS, RunConfig, excerpt, name_of
from .graphs import TaskError, one_line, read_text
from .recipe import PAPER_SCALE
from .records import git_commit, made_with, read_table, write_table
from .resolve import resolve
from .runs import get_run, run_name
from .rundir import Interrupted

# The paper's G(2,5) setting (nexttok.recipe.PAPER_SCALE): forward, reverse and teacherless; needs a GPU.
PAPER = {"base": {"deg": 2, "path_len": 5, **PAPER_SCALE, "eval_every": 1000, "ckpt_every": 1000},
         "grid": {"mode": ["forward", "reverse", "teacherless"]}}
# Every sweep below leaves the training settings to the recipe (nexttok.recipe), so each cell gets the
# recipe's settings for its shape and model.
# The README's headline at the default CPU scale, on five seeds; and on three seeds with the authors' learned
# absolute positions, at the learning rate and budget they need (reverse first reached 0.95 after 550-700 steps).
DEFAULT = {"grid": {"mode": ["forward", "reverse"], "seed": [0, 1, 2, 3, 4]},
           "runs": [{"positions": "learned", "lr": 2e-3, "steps": 1200, "mode": m, "seed": s}
                    for m in ("forward", "reverse") for s in (0, 1, 2)]}
# Degree x path length, forward and reverse, on three seeds: the grid chapter's committed table. N = 20 labels,
# except G(4,6), which needs 21: it gets 25.
GRID = {"runs": [{"deg": d, "path_len": l, "num_nodes": 20 if 1 + d * (l - 1) <= 20 else 25, "mode": m, "seed": s}
                 for d in (2, 3, 4) for l in (3, 4, 5, 6) for m in ("forward", "reverse") for s in (0, 1, 2)]}
# Mamba at degrees 2 and 3, forward and reverse, on seeds 0-2: the Mamba chapter's committed runs (Mamba's own
# recipe; about 10 minutes a run on one CPU thread, two side by side). Other shapes are the chapter's parameters.
MAMBA = {"base": {"model": "mamba"}, "grid": {"deg": [2, 3], "mode": ["reverse", "forward"], "seed": [0, 1, 2]}}
# Position 2 trained alone (only_position=2), on the seeds of the headline table: the indecipherable chapter
# sets each beside the full forward run of the same seed.
INDECIPHERABLE = {"base": {"only_position": 2}, "grid": {"seed": [0, 1, 2, 3, 4]}}
# the most configs one sweep may list (a grid is the product of its lists' lengths: a typo can make it huge); each
# is checked and resolved as the sweep loads, about a millisecond apiece
MAX_CONFIGS = 10_000
MAX_STAGES = 16  # runs a row may start from in a chain (a curriculum's stages)
# Teacherless training of G(2,l) with the recipe's model, evaluated every 25 steps to see the order in which
# positions are learned, on seeds 0-2: l = 3, 4, 5 at the recipe's budget (600 steps), l = 3, 4 at five times
# that budget (3000 steps) and l = 4 at ten times it (6000 steps); and, for depth, G(2,4) with 4 layers at 3000
# steps (seed 0, lr 1e-3 and the recipe's 3e-3), with 3 layers at 6000 (seed 0) and with 6 layers at 3000 (seeds
# 0-2, lr 1e-3: about 17 minutes a run alone on 2 CPU cores); and, for width, 2 layers x 192 at 3000 steps (seed
# 0): the teacherless chapter's committed runs.
TEACHERLESS = {"base": {"mode": "teacherless", "eval_every": 25},
               "runs": [{"path_len": l, "seed": s} for l in (3, 4, 5) for s in (0, 1, 2)]
                       + [{"path_len": l, "seed": s, "steps": 3000} for l in (3, 4) for s in (0, 1, 2)]
                       + [{"path_len": 4, "seed": s, "steps": 6000} for s in (0, 1, 2)]
                       + [{"path_len": 4, "seed": 0, "steps": 3000, "layers": 4, "lr": lr} for lr in (1e-3, 3e-3)]
                       + [{"path_len": 4, "seed": 0, "steps": 6000, "layers": 3}]
                       + [{"path_len": 4, "seed": s, "steps": 3000, "layers": 6, "lr": 1e-3} for s in (0, 1, 2)]
                       + [{"path_len": 4, "seed": 0, "steps": 3000, "dim": 192}]}
# Every objective on G(2,5) with the book's model (2 layers x 96, rotary) at the default budget (600 steps of 256
# fresh graphs), seeds 0-2: the remedies chapter's committed runs (forward and reverse are the headline's runs).
REMEDIES = {"base": {"steps": 600, "layers": 2, "n_train": 0, "diffusion_schedule": "uniform"},
            "grid": {"mode": ["teacherless", "dropout", "mtp", "diffusion", "bst", "forward", "reverse"], "seed": [0, 1, 2]}}
# Masked diffusion given more budget, on fresh graphs (the runs pin `n_train: 0`, which was the recipe's when they
# ran), at 2 layers: 8,000 steps on seed 1 (evaluated every 250 steps) and on seed 4 with the flags that were then the
# defaults (`nexttok train --mode diffusion --seed 4`, a seed no run had used); and over a longer schedule, 10,000
# steps, on seeds 0 and 1: the remedies chapter's cost of learning. Then depth (`--where layers=3`): the
# teacherless/next-token hybrid at 3 layers on G(2,4) for 10,000 steps, seeds 1, 2 and 0, and masked diffusion at 3
# layers on G(2,5) at 8,000 steps, seeds 1, 2 and 0, and seed 5 with the default flags of the recipe that followed
# (`nexttok train --mode diffusion --seed 5`; the 2-layer runs pin the book's model, which was the recipe's when they
# ran). Then one lever at a time from that recipe on seed 0, which had stalled at 0.785: MaskGIT's cosine masking
# rate, and a fixed set of 50,000 graphs seen for 41 epochs (as the masked-diffusion papers train); and the recipe
# that followed, the fixed set, with its default flags on seeds 6 and 7, seeds no run had used. And the fixed set under
# the hybrid on G(2,4), 6,000 steps, on seed 1, where fresh graphs had ended at 0.522 after 10,000. Then both levers
# together, the recipe now: the fixed set at the cosine rate on seeds 6 and 7 and, with default flags, on seeds 8 and 9,
# seeds no run had used (seed 9 ran as `nexttok train --mode diffusion --seed 9`; the base pins the uniform rate of
# every earlier row, the recipe's when they ran). And the Belief State Transformer in the setting that teaches masked
# diffusion (3 layers, the fixed set, 8,000 steps), seed 0, then seeds 1 and 2 once seed 0's arm choice climbed. And
# the same on fresh graphs, where the fixed set had been memorised: seed 0 (run first as `nexttok train --mode bst
# --layers 3 --steps 8000 --eval-every 250 --seed 0`, a pilot), then seeds 1 and 2; and that setting as the recipe's,
# with its default flags on seed 10, a seed no run had used (`nexttok train --mode bst --seed 10` when 3 layers and
# 8,000 steps were the recipe's, which its row now pins). Then a fourth layer per encoder, at 6,000 steps to stay
# within a CPU's half hour, on seeds 1 and 2, which 3 layers had not learned: where those runs stalled, the
# predictions left were those that ask a forward state for the node two or three look-ups back from the goal
# (scripts/bst_pairs.py). Then seed 0, stopped at step 1,157 to let the two finish and resumed from its checkpoint.
# Then that setting as the recipe's, with its default flags on seed 11, a seed no run had used (the row is `nexttok
# train --mode bst --seed 11`: the base's uniform rate is omitted from a key at its default; seed 12, started beside
# it and stopped at step 498 to give its core to the hybrid below, ran later from the start, alone). And the
# hybrid on G(2,4) with the fourth layer that taught BST, at 5,000 steps (half the 3-layer schedule), on seeds 1 and
# 2, which 3 layers had not learned in 10,000, then seed 0. And the 3-layer hybrid at a third of the lr (1e-3), on
# seeds 1 and 2, whose arm choice had stayed at a guess at 3e-3 (seed 0 learned once its cosine lr was under 2e-3).
# And the 3-layer hybrid as Nagarajan et al. (2025) train it, a teacherless copy beside every next-token sequence
# (fraction 1.0, a quarter more a step than 0.5), 6,000 steps to stay within a CPU's half hour: seeds 1, 2, 0.
# Then the 3-layer hybrid as first run (half copied, 10,000 steps) on seed 3, a fourth seed, to size its lottery.
FRESH = {"n_train": 0}
LEARNED = {"base": {"mode": "diffusion", "diffusion_schedule": "uniform"},
           "runs": [{"layers": 2, "seed": 1, "steps": 8000, "eval_every": 250, **FRESH}, {"layers": 2, "seed": 4, **FRESH}]
                   + [{"layers": 2, "seed": s, "steps": 10_000, "eval_every": 250, **FRESH} for s in (0, 1)]
                   + [{"mode": "hybrid", "path_len": 4, "layers": 3, "steps": 10_000, "eval_every": 250, "seed": s}
                      for s in (1, 2, 0)]
                   + [{"layers": 3, "eval_every": 250, "seed": s, **FRESH} for s in (1, 2, 0)] + [{"seed": 5, **FRESH}]
                   + [{"layers": 3, "eval_every": 250, "seed": 0, **lever}
                      for lever in ({"diffusion_schedule": "cosine", **FRESH}, {"n_train": 50_000})]
                   + [{"seed": s} for s in (6, 7)]
                   + [{"mode": "hybrid", "path_len": 4, "layers": 3, "steps": 6000, "eval_every": 250, "seed": 1,
                       "n_train": 50_000}]
                   + [{"seed": s, "diffusion_schedule": "cosine"} for s in (6, 7, 8, 9)]
                   + [{"mode": "bst", "layers": 3, "steps": 8000, "eval_every": 250, "seed": s, "n_train": n_train}
                      for n_train in (50_000, 0) for s in (0, 1, 2)]
                   + [{"mode": "bst", "layers": 3, "steps": 8000, "seed": 10, **FRESH}]
                   + [{"mode": "bst", "layers": 4, "steps": 6000, "eval_every": 250, "seed": s, **FRESH}
                      for s in (1, 2, 0)]
                   + [{"mode": "bst", "seed": s, **FRESH} for s in (11, 12)]
                   + [{"mode": "hybrid", "path_len": 4, "layers": 4, "steps": 5000, "eval_every": 250, "seed": s}
                      for s in (1, 2, 0)]
                   + [{"mode": "hybrid", "path_len": 4, "layers": 3, "steps": 10_000, "eval_every": 250, "lr": 1e-3,
                       "seed": s} for s in (1, 2)]
                   + [{"mode": "hybrid", "path_len": 4, "layers": 3, "steps": 6000, "eval_every": 250,
                       "hybrid_fraction": 1.0, "seed": s} for s in (1, 2, 0)]
                   + [{"mode": "hybrid", "path_len": 4, "layers": 3, "steps": 10_000, "eval_every": 250, "seed": 3}]}
NAMED = {"paper": PAPER, "default": DEFAULT, "grid": GRID, "mamba": MAMBA, "indecipherable": INDECIPHERABLE,
         "teacherless": TEACHERLESS, "remedies": REMEDIES, "learned": LEARNED}


def load_sweep(spec: str) -> list[RunConfig]:
    """The configs of a named grid or a sweep file, in a fixed order."""
    if spec in NAMED:
        data = NAMED[spec]
    else:
        path = Path(spec)
        if not path.is_file():
            raise TaskError(f"{spec}: neither a sweep file nor a named grid ({', '.join(NAMED)})")
        text = read_text(path, "a sweep file (JSON or YAML)")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml  # optional: JSON needs nothing extra

                data = yaml.load(text, Loader=_unique_yaml_loader(yaml))
            else:
                data = json.loads(text, object_pairs_hook=_unique_keys)
        except ImportError:
            raise TaskError(f"{spec}: reading YAML needs PyYAML (pip install pyyaml), or write the sweep as JSON") from None
        except Exception as err:  # the parsers' own errors name line and column
            raise TaskError(f"{spec}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {one_line(err)}") from None
    if isinstance(data, list):
        data = {"runs": data}
    if not isinstance(data, dict) or not set(data) <= {"base", "grid", "runs"} or not data:
        raise TaskError(f"{spec}: a sweep is a list of configs or an object with 'base', 'grid' and/or 'runs'")
    base, grid, runs = data.get("base", {}), data.get("grid", {}), data.get("runs", [])
    if not isinstance(base, dict):
        raise TaskError(f"{spec}: 'base' must be an object of config fields (got {type(base).__name__})")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise TaskError(f"{spec}: 'grid' must map config fields to non-empty lists of values")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise TaskError(f"{spec}: 'runs' must be a list of objects of config fields")
    size = math.prod(len(v) for v in grid.values()) + len(runs)
    if size > MAX_CONFIGS:
        raise TaskError(f"{spec}: {size:,} configs, more than the {MAX_CONFIGS:,} a sweep may hold")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    if not grid and "runs" not in data:
        combos = [{}]
    combos += runs
    if not combos:
        raise TaskError(f"{spec}: the sweep lists no configs")
    configs, held, brought = [], set(), set()
    for number, combo in enumerate(combos, 1):
        try:
            *parents, cfg = _with_parents(base, combo)
        except TaskError as err:
            raise TaskError(f"{spec}: config {number} ({_describe(combo)}): {err}") from None
        # a run that starts from another brings that run first, unless the sweep holds it (a row of its own is it)
        for parent in parents:
            if (key := _key_or_files(parent)) not in held:
                configs.append(parent)
                held.add(key)
                brought.add(key)
        if (key := _key_or_files(cfg)) not in brought:
            configs.append(cfg)
            held.add(key)
    keys = [_key_or_files(c) for c in configs]
    if len(set(keys)) != len(keys):
        raise TaskError(f"{spec}: the same config appears twice")
    return configs


def _with_parents(base: dict, combo: dict, depth: int = 0) -> list[RunConfig]:
    """A row's config, after the configs of the runs it starts from: a row's `init_from` may be a config (a mapping
    of fields, over the base as a row's), which stands for that run by its name `<mode>-<key>` (a curriculum's next
    stage names the stage before it so)."""
    if depth > MAX_STAGES:  # a YAML alias can make a row its own stage before
        raise TaskError(f"init_from nests more than {MAX_STAGES} stages deep")
    fields = {**base, **combo}
    parents = []
    if isinstance(fields.get("init_from"), dict):
        parents = _with_parents(base, fields["init_from"], depth + 1)
        fields["init_from"] = run_name(parents[-1])
    return parents + [resolve(RunConfig.from_dict(fields))]


def _unique_keys(pairs: list) -> dict:
    """A JSON object, refusing a key given twice (where the last one would silently win)."""
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"the key {excerpt(k, 40)} appears twice in one object")
        seen[k] = v
    return seen


def _unique_yaml_loader(yaml):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            for i, k in enumerate(keys):
                try:
                    twice = k in keys[:i]
                except TypeError:  # an unhashable key: the safe loader refuses it itself
                    twice = False
                if twice:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {excerpt(k, 40)} appears twice in "
                                                            "one mapping", node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def select(configs: list[RunConfig], where: list[str]) -> list[RunConfig]:
    """The configs whose fields have every FIELD=VALUE in `where` (VALUE read as JSON where it parses, so
    deg=4 and lr=2e-3 are numbers and mode=forward a string), compared with the config as it trains (a field the
    sweep leaves to the recipe has the recipe's value), and the runs they start from. Refuses an unknown field and a
    selection of none."""
    fields, chosen = set(FIELDS), configs
    for term in where:
        field, eq, text = term.partition("=")
        if not eq or field not in fields:
            raise TaskError(f"--where {term!r} is not FIELD=VALUE with FIELD a config field (e.g. deg=4)")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        chosen = [c for c in chosen if getattr(c, field) == value]
        if not chosen:
            raise TaskError(f"--where {' '.join(where)}: no config of the sweep has {field}={text}")
    # a chosen run brings the runs it starts from, in the sweep's order
    wanted, names = set(map(id, chosen)), _by_name(configs)
    for c in reversed(configs):
        if id(c) in wanted and c.init_from in names:
            wanted.add(id(names[c.init_from]))
    return [c for c in configs if id(c) in wanted]


def _describe(combo: dict) -> str:
    """A config of a sweep as its error names it: a bounded excerpt of each value (a YAML value of nested aliases
    can be small on disk and gigabytes when printed whole)."""
    text = ", ".join(f"{name_of(k)}={excerpt(v, 60)}" for k, v in list(combo.items())[:8]) or "the base"
    return text if len(text) <= 120 else text[:117] + "..."


def _by_name(configs: list[RunConfig]) -> dict[str, RunConfig]:
    """The configs by their run's name (`<mode>-<key>`, how a run that starts from one names it)."""
    return {f"{c.mode}-{_key_or_files(c)}": c for c in configs}


def _key_or_files(cfg: RunConfig):
    """The config's key, or, while one of its data files cannot be read (the run will fail and say so), the
    config with its files' paths."""
    try:
        return cfg.key()
    except TaskError:
        return json.dumps(cfg.to_dict(), sort_keys=True)


def config_name(cfg: RunConfig) -> str:
    """How a sweep names a config in its progress and its errors."""
    name = f"{cfg.mode} G({cfg.deg},{cfg.path_len}) seed {cfg.seed}"
    try:
        return f"{name} ({cfg.key()})"
    except TaskError:
        return f"{name} (train_file {cfg.train_file})"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise TaskError(f"--shard {text!r} is not i/n (e.g. 0/4)") from None
    if n < 1:
        raise TaskError(f"--shard {text}: n must be at least 1")
    if not 0 <= i < n:
        raise TaskError(f"--shard {text}: i must be in 0..{n - 1}")
    return i, n


def shard_table(out: Path, i: int, n: int) -> Path:
    return out / f"results-shard-{i}-of-{n}.csv"


def run_sweep(configs: list[RunConfig], out: str | Path, shard: tuple[int, int] = (0, 1), progress: bool = True) -> Path:
    """Train (or take from the cache) this shard's configs; rewrite the shard's table after each run. A config
    that fails is named and skipped, the others still run; then TaskError lists every failure."""
    out = Path(out)
    i, n = shard
    mine = configs[i::n]
    if not mine:
        raise TaskError(f"shard {i}/{n} has no configs (the sweep has {len(configs)})")
    out.mkdir(parents=True, exist_ok=True)
    table = shard_table(out, i, n)
    rows, failed = [], []
    try:  # the rows this shard's table already holds: a config that fails now keeps its row (a sweep never loses one)
        previous = {row["key"]: row for row in read_table(table)} if table.is_file() else {}
    except (TaskError, ValueError, OSError, csv.Error, KeyError):
        previous = {}
    keys = [_key_or_files(c) for c in mine]
    parents = _by_name(configs)
    for number, cfg in enumerate(mine, 1):
        name = config_name(cfg)
        if progress:
            print(f"[shard {i}/{n}] run {number}/{len(mine)}: {name}", flush=True)
        try:
            if cfg.init_from in parents:  # the run it starts from, which another shard may hold: taken or waited for
                get_run(parents[cfg.init_from], out / "runs", progress=progress)
            rows.append(get_run(cfg, out / "runs", progress=progress).row())
        except Interrupted:
            raise
        except (TaskError, OSError) as err:  # the run's own fault (its data, its divergence): the others still run
            kept = previous.get(keys[number - 1])
            note = " (its earlier row is kept)" if kept else ""
            print(f"[shard {i}/{n}] failed: {name}: {err}{note}", file=sys.stderr, flush=True)
            failed.append(f"{name}: {err}{note}")
            if not kept:
                continue
            rows.append(kept)
        # the rows of the configs still to come stay in the table until they are run again
        write_table(rows + [previous[k] for k in keys[number:] if k in previous], table)
    if failed:
        raise TaskError(f"{len(failed)} of {len(mine)} configs failed" + (f"; {table} holds the others" if rows else "")
                        + ":\n  " + "\n  ".join(failed))
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
        try:
            rows = read_table(table)
        except (ValueError, OSError, csv.Error) as err:  # UnicodeDecodeError is a ValueError
            raise TaskError(f"{table}: not a results table ({one_line(err, 200)})") from None
        if any(not isinstance(row.get("key"), str) for row in rows):
            raise TaskError(f"{table}: not a results table (a row without a config key)")
        for row in rows:
            if row["key"] in seen and seen[row["key"]][1] != table:
                raise TaskError(f"config {row['key']} is in both {seen[row['key']][1].name} and {table.name}")
            seen[row["key"]] = (row, table)
    wanted = [_key_or_files(c) for c in configs]
    strangers = sorted(set(seen) - set(wanted))
    if strangers:
        raise TaskError(f"{out} holds results of configs that are not in this sweep: {', '.join(strangers)}")
    merged = out / "results.csv"
    write_table([seen[k][0] for k in wanted if k in seen], merged)
    return merged, [c for c, k in zip(configs, wanted) if k not in seen]


def probe_main(script: str, doc: str, probe_rows, argv: list[str] | None = None) -> int:
    """The command line of a script that probes a sweep's runs into a results table (scripts/arm_swap.py,
    scripts/bst_pairs.py): SWEEP --runs FOLDER --out TABLE.csv [--where FIELD=VALUE ...] [--quiet].
    probe_rows(sweep, runs, where, progress) makes the rows; each gets how it was made (command, commit, torch,
    date). Exit 2 names a bad argument."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("sweep", help="a named sweep (nexttok sweep's) or a sweep file")
    parser.add_argument("--runs", required=True, type=Path, help="the run cache that holds (or will hold) its runs")
    parser.add_argument("--out", required=True, type=Path, help="the table to write (CSV)")
    parser.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                        help="only the configs whose field has this value (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        rows = probe_rows(args.sweep, args.runs, args.where, progress=not args.quiet)
    except TaskError as err:
        print(f"{script}: {err}", file=sys.stderr)
        return 2
    made = {"command": " ".join([f"python scripts/{script}.py", *argv]), "commit": git_commit(), **made_with()}
    write_table([{**row, **made} for row in rows], args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0
