"""What the book's chapters share: their parameters as a run config, the committed results that travel with
the package, and the checks a chapter makes before it states a claim.

A chapter's parameters cell holds plain scalars (papermill sets them); the chapter passes them by name to
`from_parameters`, None meaning "the recipe's". Committed results are read from
the package (`nexttok/results/`), so a chapter opened alone, on Colab or from another folder, finds them.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from .bench import objective_cost
from .config import FIELDS, RunConfig, TaskError
from .evaluate import LEARNED
from .plots import scale_label
from .recipe import PAPER_SCALE, known_short, under_trained_fix
from .records import RunRecord, read_table
from .resolve import resolve, task_of
from .runs import list_runs, run_dir

RESULTS = Path(__file__).resolve().parent / "results"
# a chapter that would train for longer than this on a CPU says so and stops before it starts
CPU_BUDGET_SECONDS = 30 * 60
# measured here (2 CPU cores): microseconds per training sample and per token of the sequence, at width 96, 2 layers
CPU_US_PER_SAMPLE_TOKEN = 11.0


class Precondition(AssertionError):
    """A chapter's run is not in the state its claim is about (under-trained, over budget): the message
    says what is missing and how to fix it, and blames no claim."""


def results_path(*parts: str, root: str | Path | None = None) -> Path:
    """A committed result file or folder that ships with the package; or, with `root`, the same name in a folder
    laid out like it (a reader's own sweep results)."""
    if root and not Path(root).is_dir():
        raise Precondition(f"results = {str(root)!r} is not a folder: give one laid out like nexttok/results, or None")
    if root and not parts:  # the folder itself, to list: it must hold results
        require_results(root)
    if any(".." in Path(part).parts or Path(part).is_absolute() for part in parts):
        raise Precondition(f"{'/'.join(parts)!r} is not a name inside the results folder")
    return (Path(root) if root else RESULTS).joinpath(*parts)


def require_results(root: str | Path) -> None:
    """A folder a chapter reads results from holds some: a table or a folder of runs."""
    if not any(p.suffix == ".csv" or p.is_dir() for p in Path(root).iterdir()):
        raise Precondition(f"results = {str(root)!r} holds no results table (*.csv) and no folder of runs: give one "
                           "laid out like nexttok/results (a sweep's --out), or None for the committed results")


def from_parameters(scale: str = "cpu", **fields) -> RunConfig:
    """The run config of a chapter's parameters, given by name (None: the recipe's value). With scale="paper" the
    paper's model, data and budget (recipe.PAPER_SCALE) replace those fields, so one changed line moves a chapter to
    the paper's scale. The config is not resolved: a chapter derives its variants from it (another seed, one
    position alone), and each is resolved, with the recipe's values for its own settings, where it is used."""
    if scale not in ("cpu", "paper"):
        raise Precondition(f"scale must be \"cpu\" (the recipe's) or \"paper\" (the paper's model and data), not {scale!r}")
    # every chapter's run records the gradient probe (about 5% of a step's time), so the run one chapter trains is the
    # run every later chapter reads, the indecipherable chapter's gradient figure included
    values = {"probe_gradients": True, **{k: v for k, v in fields.items() if v is not None}}
    if scale == "paper":
        values.update(PAPER_SCALE)
    try:
        return RunConfig(**values)
    except TypeError as err:  # a name that is no RunConfig field
        raise Precondition(f"{err}: a chapter's parameters are RunConfig fields") from None


def describe(run: RunRecord) -> str:
    """What a chapter prints about a run it trained: its scale, its headline metrics and its accuracy by position."""
    m = run.metrics
    return "\n".join([scale_label(run.config),
                      str({k: round(float(m[k]), 4) for k in ("gen_accuracy", "first_decision_accuracy",
                                                               "on_some_arm", "tf_loss")}),
                      f"teacher-forced accuracy by position: {[round(x, 3) for x in m['tf_token_accuracy']]}",
                      f"generated accuracy by position:      {[round(x, 3) for x in m['gen_token_accuracy']]}"])


def provenance(runs: list[RunRecord]) -> pd.DataFrame:
    """How each run behind a chapter was made: one row per run with its mode, seed, command, commit, machine,
    date and wall time. A chapter prints it once, folded away at its end, so that the lab notes stay out of
    the argument and still travel with it."""
    rows = []
    for run in runs:
        p = run.provenance
        rows.append({"run": run.folder.name if run.folder else run.key, "mode": run.config.mode,
                     "seed": run.config.seed, "steps": run.config.steps,
                     "wall seconds": p.get("wall_seconds", run.metrics.get("train_seconds")),
                     **{k: p.get(k) for k in ("commit", "device", "torch", "date", "command")}})
    return pd.DataFrame(rows)


def is_default(cfg: RunConfig) -> bool:
    """Whether cfg is the chapter's own default run for its mode (the recipe's settings, any seed): the runs
    the committed tables hold."""
    return resolve(cfg).key() == resolve(RunConfig(mode=cfg.mode, only_position=cfg.only_position, seed=cfg.seed)).key()


def frame(runs: list[RunRecord]) -> pd.DataFrame:
    """Runs as a table: one row per run, its config, final metrics (one column per position) and provenance. No runs:
    an empty table that still has the config's columns, so a chapter's selections find none rather than failing."""
    if not runs:
        return pd.DataFrame(columns=["run", "key", *FIELDS, *METRIC_COLUMNS])
    return pd.DataFrame([run.row() for run in runs])


# the final metrics every table's row holds
METRIC_COLUMNS = ("gen_accuracy",)


def checked_rows(path: Path) -> list[dict]:
    """A results table's rows, refused by name (Precondition) where a chapter could not read them: a missing file,
    a missing key or metric column, an empty metric cell."""
    if not path.is_file():
        raise Precondition(f"{path}: no such results table")
    try:
        rows = read_table(path)
    except (TaskError, ValueError, OSError) as err:
        raise Precondition(f"{path}: not a results table ({err})") from None
    columns = set(rows[0]) if rows else set()
    missing = [c for c in ("key", *METRIC_COLUMNS) if rows and c not in columns]
    if missing:
        raise Precondition(f"{path}: no column {', '.join(missing)}: not a results table of this package")
    # every metric column the table has (the config's columns may be empty: a field at its default)
    metrics = [c for c in columns if c == "key" or c in METRIC_COLUMNS or c.startswith(("gen_", "tf_"))]
    for number, row in enumerate(rows, 2):  # line 1 is the header
        length = row.get("path_len") if isinstance(row.get("path_len"), int) else FIELDS["path_len"].default
        # a per-position column beyond this row's path length is empty in a table of several lengths
        empty = [c for c in metrics if row.get(c) in (None, "")
                 and not (c.rsplit("_", 1)[-1].isdigit() and int(c.rsplit("_", 1)[-1]) > length)]
        if empty:
            raise Precondition(f"{path}:{number}: the row of run {row.get('key') or '?'} has no {', '.join(empty[:3])}")
    return rows


def committed_runs(name: str, root: str | Path | None = None) -> list[RunRecord]:
    """Every run of a committed table (`results/<name>.csv`) or folder of run folders (`results/<name>`); none where
    it does not exist. With `root`, of a folder laid out like nexttok/results."""
    path = results_path(name, root=root)
    if root:
        require_results(root)
    if path.suffix == ".csv":
        try:
            return [RunRecord.from_row(row, str(path)) for row in checked_rows(path)] if path.is_file() else []
        except TaskError as err:
            raise Precondition(str(err)) from None
    return list_runs(path) if path.is_dir() else []


def committed(table: str, configs: list[RunConfig], required: bool = True) -> list[RunRecord]:
    """The runs of a committed table (`results/<table>`) that are these configs, in their order. A config
    with no row is an error when `required` (the chapter's own recipe must be committed), else left out."""
    runs = {run.key: run for run in committed_runs(table)}
    configs = [resolve(c) for c in configs]
    found = [runs[c.key()] for c in configs if c.key() in runs]
    missing = [c for c in configs if c.key() not in runs]
    if missing and required:
        names = ", ".join(f"{c.mode} G({c.deg},{c.path_len}) seed {c.seed} ({c.key()})" for c in missing[:4])
        raise Precondition(f"results/{table} has no row for {len(missing)} of {len(configs)} configs ({names}...): "
                           "the committed table does not hold them (not run yet, or made with another recipe or code); "
                           "re-run its sweep (results/README.md names it and what it holds) or set recompute = True")
    return found


def committed_run(cfg: RunConfig, folder: str) -> RunRecord:
    """A committed run folder (`results/<folder>/<mode>-<key>`): config, history, metrics, provenance."""
    path = run_dir(cfg, results_path(folder))
    if not (path / "metrics.json").exists():
        raise Precondition(f"no committed run for {cfg.mode} seed {cfg.seed} with these parameters "
                           f"(results/{folder}/{path.name}); set recompute = True to train it")
    return RunRecord.load(path)


def cell_label(deg: int, path_len: int, layers: int, dim: int, lr: float, steps: int) -> str:
    """The name of a cell of runs that differ only in their seed (shape, model, learning rate and budget), as the
    teacherless chapter and the paper's claims table group them."""
    return f"G({deg},{path_len}), {layers}x{dim}, lr {lr:g}, {steps} steps"


def require(condition: bool, problem: str, fix: str) -> None:
    """A precondition of a claim: when it fails the message says what is missing and how to fix it."""
    if not condition:
        raise Precondition(f"{problem}: {fix}")


def unfit_positions(run: RunRecord, positions=None, level: float = LEARNED) -> list[int]:
    """The target positions (1-based; default the later ones, 3..l, which the cheat fits) that `run` has not fit:
    teacher-forced accuracy below `level`."""
    acc = run.metrics["tf_token_accuracy"]
    return [i for i in (positions or range(3, run.config.path_len + 1)) if acc[i - 1] < level]


def require_fit(run: RunRecord, positions=None, level: float = LEARNED) -> None:
    """Every given target position is fit: the later positions of a forward run (the cheat), or every position of
    a run that should have learned."""
    acc, short = run.metrics["tf_token_accuracy"], unfit_positions(run, positions, level)
    require(not short, f"positions {short} are not fit after {run.config.steps} steps (teacher-forced "
            f"{[round(acc[i - 1], 2) for i in short]} < {level}): the run is under-trained for {_shape(run.config)}",
            under_trained_fix(run.config.deg, run.config.model))


def require_learned(run: RunRecord, level: float = LEARNED) -> None:
    """The run generates the held-out paths at `level` or more: a reversed run (which should learn the task)."""
    cfg, acc = run.config, run.metrics["gen_accuracy"]
    require(acc >= level, f"the {cfg.mode} run has not learned after {cfg.steps} steps (gen_accuracy {acc:.2f} "
            f"< {level}): it is under-trained for {_shape(cfg)}", under_trained_fix(cfg.deg, cfg.model))


def _shape(cfg: RunConfig) -> str:
    return f"{cfg.mode} G({cfg.deg},{cfg.path_len}) with N={cfg.num_nodes}, seed {cfg.seed}"


def cells_not_learned(runs: list[RunRecord], level: float = LEARNED) -> list[tuple[int, int]]:
    """The (deg, path_len) cells in which no more than half the seeds' runs reached gen_accuracy `level`. A reversed
    run is claimed to learn the task, but at degrees 3 and 4 a seed can sit on the plateau of the look-up it needs
    for the whole budget, so the grid's reverse claim is about each cell, on most of its seeds."""
    seeds: dict[tuple[int, int], list[bool]] = {}
    for run in runs:
        seeds.setdefault((run.config.deg, run.config.path_len), []).append(run.metrics["gen_accuracy"] >= level)
    return sorted(cell for cell, learned in seeds.items() if 2 * sum(learned) <= len(learned))


def assert_first_decision(accuracy: float, deg: int, path_len: int, what: str) -> None:
    """The forward chapters' claim about the arm choice (target position 2), which depends on the path length.
    From l = 4 on it sits at chance, 1/d within 0.15: the arm choice is l - 2 >= 2 parent look-ups back from the
    goal, and teacher forcing does not find them. At l = 3 it is the goal's own parent, a single look-up from
    the query, which teacher forcing can learn, but how far one run gets within the budget depends on its seed
    (the grid chapter's committed runs: 0.82-0.86 on seeds 0-2 at degree 2; 0.62, 0.62 and 0.34 at degree 3): so
    at l = 3 a run is not below chance (1/d - 0.15 or more) and has not solved the arm choice (below LEARNED)."""
    chance = 1 / deg
    if path_len >= 4:
        assert abs(accuracy - chance) <= 0.15, f"{what} is at chance, 1/d = {chance:.2f} (got {accuracy:.3f})"
    else:
        assert chance - 0.15 <= accuracy < LEARNED, (
            f"at l = 3 the arm choice is one look-up from the goal, which teacher forcing learns on some seeds but "
            f"not all the way: {what} is between chance, 1/d = {chance:.2f}, and {LEARNED} (got {accuracy:.3f})")


def cpu_seconds(cfg: RunConfig) -> float:
    """A rough CPU cost of training cfg on this book's 2-core machine (its own measurement, not a promise):
    next-token training's measured cost per sample and token, scaled by depth, width squared and the FLOPs the
    objective adds (`bench.objective_cost`)."""
    c = resolve(cfg)
    width = (c.dim or 96) / 96
    depth = (c.layers or 2) / 2
    per_sample = CPU_US_PER_SAMPLE_TOKEN * 1e-6 * task_of(c).sequence_len * depth * width ** 2 * objective_cost(c)
    return per_sample * c.steps * c.batch_size


def require_budget(configs: list[RunConfig]) -> float:
    """Refuse, before anything trains, a run the recipe is measured not to train far enough (`recipe.known_short`)
    and a set of runs a CPU chapter should not spend its time on (on a GPU any budget goes). Returns the estimated
    seconds on the CPU."""
    for cfg in configs:
        short = known_short(cfg)
        require(short is None, str(short),
                "set steps to try a longer run, or run the chapter at a lower degree or length")
    seconds = sum(cpu_seconds(c) for c in configs)
    on_cpu = any(c.device == "cpu" or (c.device == "auto" and not torch.cuda.is_available()) for c in configs)
    if on_cpu:
        require(seconds <= CPU_BUDGET_SECONDS,
                f"these {len(configs)} runs would take about {math.ceil(seconds / 60)} minutes on a 2-core CPU, more "
                f"than a chapter spends ({CPU_BUDGET_SECONDS // 60} minutes)",
                "run it on a GPU, or lower steps, or read the committed results (recompute = False)")
    return seconds
