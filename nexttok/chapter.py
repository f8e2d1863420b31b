"""What the book's chapters share: their parameters as a run config, the committed results that travel with
the package, and the checks a chapter makes before it states a claim.

A chapter's parameters cell holds plain scalars (papermill sets them); `from_parameters(globals())` turns the
ones that are RunConfig fields into a config, None meaning "the recipe's". Committed results are read from
the package (`nexttok/results/`), so a chapter opened alone, on Colab or from another folder, finds them.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from .config import RunConfig
from .evaluate import LEARNED
from .graphs import TaskError
from .plots import scale_label
from .recipe import PAPER_SCALE, known_short, under_trained_fix
from .records import read_table
from .runs import load_run, run_dir

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
    return (Path(root) if root else RESULTS).joinpath(*parts)


def from_parameters(namespace: dict, **fixed) -> RunConfig:
    """The run config of a chapter's parameters: every name in `namespace` that is a RunConfig field
    (None: the recipe's value); with `scale = "paper"` in the namespace, the paper's model, data and budget
    (recipe.PAPER_SCALE) replace those fields, so one changed line moves a chapter to the paper's scale; then
    `fixed` on top (e.g. mode="forward")."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: v for k, v in namespace.items() if k in names}
    scale = namespace.get("scale", "cpu")
    if scale not in ("cpu", "paper"):
        raise Precondition(f"scale must be \"cpu\" (the recipe's) or \"paper\" (the paper's model and data), not {scale!r}")
    if scale == "paper":
        values.update(PAPER_SCALE)
    return RunConfig(**{**values, **fixed})


def describe(run: dict) -> str:
    """What a chapter prints about a run it trained: its scale, its headline metrics and its accuracy by position."""
    m = run["metrics"]
    return "\n".join([scale_label(run["config"]),
                      str({k: m[k] for k in ("gen_accuracy", "first_decision_accuracy", "on_some_arm", "tf_loss", "train_seconds")}),
                      f"teacher-forced accuracy by position: {[round(x, 3) for x in m['tf_token_accuracy']]}",
                      f"generated accuracy by position:      {[round(x, 3) for x in m['gen_token_accuracy']]}"])


def is_default(cfg: RunConfig) -> bool:
    """Whether cfg is the chapter's own default run for its mode (the recipe's settings, any seed): the runs
    the committed tables hold."""
    return cfg.key() == RunConfig(mode=cfg.mode, only_position=cfg.only_position, seed=cfg.seed).key()


def committed(table: str, configs: list[RunConfig], required: bool = True) -> list[dict]:
    """The rows of a committed table (`results/<table>`) that are these configs, in their order. A config
    with no row is an error when `required` (the chapter's own recipe must be committed), else left out."""
    rows = {row["key"]: row for row in read_table(results_path(table))}
    found = [rows[c.key()] for c in configs if c.key() in rows]
    missing = [c for c in configs if c.key() not in rows]
    if missing and required:
        names = ", ".join(f"{c.mode} G({c.deg},{c.path_len}) seed {c.seed} ({c.key()})" for c in missing[:4])
        raise Precondition(f"results/{table} has no row for {len(missing)} of {len(configs)} configs ({names}...): "
                           "the committed table does not hold them (not run yet, or made with another recipe or code); "
                           "re-run its sweep (results/README.md names it and what it holds) or set recompute = True")
    return found


def committed_run(cfg: RunConfig, folder: str) -> dict:
    """A committed run folder (`results/<folder>/<mode>-<key>`): config, history, metrics, provenance."""
    path = run_dir(cfg, results_path(folder))
    if not (path / "metrics.json").exists():
        raise Precondition(f"no committed run for {cfg.mode} seed {cfg.seed} with these parameters "
                           f"(results/{folder}/{path.name}); set recompute = True to train it")
    return load_run(path)


def cell_label(deg: int, path_len: int, layers: int, dim: int, lr: float, steps: int) -> str:
    """The name of a cell of runs that differ only in their seed (shape, model, learning rate and budget), as the
    teacherless chapter and the paper's claims table group them."""
    return f"G({deg},{path_len}), {layers}x{dim}, lr {lr:g}, {steps} steps"


def first_step(history: list[dict], key: str | list[str], level: float) -> int | None:
    """The step of the first evaluation in a run's history at which `key` (or every key of a list) reached
    `level`; None if never."""
    keys = [key] if isinstance(key, str) else key
    return next((h["step"] for h in history if all(h[k] >= level for k in keys)), None)


def require(condition: bool, problem: str, fix: str) -> None:
    """A precondition of a claim: when it fails the message says what is missing and how to fix it."""
    if not condition:
        raise Precondition(f"{problem}: {fix}")


def require_fit(run: dict, positions, level: float = LEARNED) -> None:
    """The run's teacher-forced accuracy is at least `level` at every given target position: the later
    positions of a forward run (the cheat) or every position of a run that should have learned."""
    cfg, acc = run["config"], run["metrics"]["tf_token_accuracy"]
    short = [i for i in positions if acc[i - 1] < level]
    require(not short, f"positions {short} are not fit after {cfg['steps']} steps (teacher-forced "
            f"{[round(acc[i - 1], 2) for i in short]} < {level}): the run is under-trained for {_shape(cfg)}",
            under_trained_fix(cfg["deg"], cfg["model"]))


def require_learned(run: dict, level: float = LEARNED) -> None:
    """The run generates the held-out paths at `level` or more: a reversed run (which should learn the task)."""
    cfg, acc = run["config"], run["metrics"]["gen_accuracy"]
    require(acc >= level, f"the {cfg['mode']} run has not learned after {cfg['steps']} steps (gen_accuracy {acc:.2f} "
            f"< {level}): it is under-trained for {_shape(cfg)}", under_trained_fix(cfg["deg"], cfg["model"]))


def _shape(cfg: dict) -> str:
    return f"{cfg['mode']} G({cfg['deg']},{cfg['path_len']}) with N={cfg['num_nodes']}, seed {cfg['seed']}"


def later_positions_fit(row, level: float = LEARNED) -> bool:
    """Whether a flat results row (a committed table's, or `runs.flat_row`'s) has fit every target position after
    the first decision, 3..l, teacher-forced at `level` or more: for a forward run, whether it does the cheat.
    (`require_fit` is the same test on one run's metrics, as a precondition.)"""
    return min(row[f"tf_token_accuracy_{i}"] for i in range(3, int(row["path_len"]) + 1)) >= level


def cells_not_learned(rows, level: float = LEARNED) -> list[tuple[int, int]]:
    """The (deg, path_len) cells of flat results rows in which no more than half the seeds reached gen_accuracy
    `level`. A reversed run is claimed to learn the task, but at degree 3 and 4 a seed can sit on the plateau of
    the look-up it needs for the whole budget (reverse G(4,3) seed 0 at 1/4 for 3000 steps where seeds 1 and 2
    learned it by step 650), so the grid's reverse claim is about each cell, on most of its seeds."""
    seeds: dict[tuple[int, int], list[bool]] = {}
    for row in rows:
        seeds.setdefault((int(row["deg"]), int(row["path_len"])), []).append(row["gen_accuracy"] >= level)
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
    """A rough CPU cost of training cfg on this book's 2-core machine (its own measurement, not a promise)."""
    c = cfg.resolved()
    width = (c.dim or 96) / 96
    depth = (c.layers or 2) / 2
    return CPU_US_PER_SAMPLE_TOKEN * 1e-6 * c.steps * c.batch_size * c.task.sequence_len * depth * width ** 2


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
