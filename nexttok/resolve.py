"""`resolve(cfg)`: a run config checked against what the package knows (its objectives, its models, the task's
shape) with the recipe's settings filled in. Every entry (the CLI, a chapter, a sweep, `train`) resolves a config
once; the result is marked resolved, and its key is fixed from then on."""
from __future__ import annotations

import dataclasses

from .config import MAX_PARAMS, MAX_SEQUENCE, OMITTED_AT_DEFAULT, RunConfig, TaskError, excerpt
from .graphs import PathStar
from .models import MODELS, PRETRAINED
from .objectives import MODES, OBJECTIVE_FIELDS, OBJECTIVE_MODELS
from .recipe import recipe


def task_of(cfg: RunConfig) -> PathStar:
    """The task's shape (checked: a graph of this shape exists)."""
    return PathStar(cfg.deg, cfg.path_len, cfg.num_nodes)


def resolve(cfg: RunConfig) -> RunConfig:
    """cfg checked, with every recipe field it leaves None filled in (a resolved config is only checked)."""
    _check_names(cfg)
    if not cfg.is_resolved:
        unset = {k: v for k, v in recipe(cfg).items() if getattr(cfg, k) is None}
        cfg = dataclasses.replace(cfg, **unset)
        if unset.get("n_train") and not _holds_its_graphs(cfg):
            cfg = dataclasses.replace(cfg, n_train=0)  # the recipe's fixed set is more than a small task holds
    _check_size(cfg)
    _check_graphs(cfg)
    return cfg.mark_resolved()


def _is_set(cfg: RunConfig, name: str) -> bool:
    value = getattr(cfg, name)
    return value is not None and OMITTED_AT_DEFAULT.get(name, object()) != value


def _check_names(cfg: RunConfig) -> None:
    checks = [
        (cfg.mode in MODES, f"mode must be one of {', '.join(MODES)} (got {cfg.mode!r})"),
        (cfg.model in MODELS, f"model must be one of {', '.join(MODELS)} (got {cfg.model!r})"),
        (cfg.weights is None or cfg.model in PRETRAINED, "--weights is for the pretrained models only"),
        (cfg.positions is None or cfg.model == "gpt", "--positions is for the gpt model only"),
        (cfg.init_from is None or cfg.model in ("gpt", "mamba"), "--init-from is for the gpt and mamba models"),
    ]
    for mode, models in OBJECTIVE_MODELS.items():
        checks.append((cfg.mode != mode or cfg.model in models,
                       f"--mode {mode} trains the {' or '.join(models)} model only (got --model {cfg.model})"))
    for name, modes in OBJECTIVE_FIELDS.items():
        checks.append((not _is_set(cfg, name) or cfg.mode in modes,
                       f"--{name.replace('_', '-')} is for --mode {' or '.join(modes)} only"))
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        raise TaskError("; ".join(problems))
    if not (cfg.train_file or cfg.test_file):
        task = task_of(cfg)
        if task.sequence_len > MAX_SEQUENCE:
            raise TaskError(f"G({cfg.deg},{cfg.path_len}) is {task.sequence_len} tokens long; the models here read "
                            f"at most {MAX_SEQUENCE}")


def _holds_its_graphs(cfg: RunConfig) -> bool:
    """Whether the task holds the graphs the run draws: a fixed train set and the test set are disjoint sets of
    distinct graphs (fresh graphs and data files ask for no such thing)."""
    return bool(cfg.train_file) or not cfg.n_train or task_of(cfg).has_distinct_graphs(cfg.n_train + cfg.n_test)


def _check_graphs(cfg: RunConfig) -> None:
    if not _holds_its_graphs(cfg):
        raise TaskError(f"G({cfg.deg},{cfg.path_len}) with num_nodes={cfg.num_nodes} has only "
                        f"{task_of(cfg).distinct_graphs:,} distinct graphs, fewer than n_train + n_test = "
                        f"{cfg.n_train + cfg.n_test:,}; use more nodes or fewer graphs")


def _check_size(cfg: RunConfig) -> None:
    if cfg.mtp_heads is not None and cfg.mtp_heads > cfg.path_len:
        raise TaskError(f"--mtp-heads {excerpt(cfg.mtp_heads)} is more heads than the {cfg.path_len} target tokens they "
                        "predict; use at most --path-len")
    if cfg.model == "gpt" and cfg.dim % cfg.heads:
        raise TaskError(f"dim {cfg.dim} is not divisible by heads {cfg.heads}")
    if cfg.model in ("gpt", "mamba"):
        blocks = cfg.layers + (cfg.mtp_heads or 1) - 1  # mtp: a block per extra head
        params = 12 * blocks * cfg.dim ** 2 + 2 * (cfg.num_nodes + 4) * cfg.dim
        if params > MAX_PARAMS:
            raise TaskError(f"--layers {cfg.layers} --dim {cfg.dim} is a model of about {params:.2g} parameters, more "
                            f"than the {MAX_PARAMS:,} this package trains")
