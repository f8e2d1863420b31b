"""One dataclass describes a run. The CLI flags, the notebooks' parameters and the run cache all map
onto it; its hash names a cached run.

Fields that default to None are the recipe's (`nexttok.recipe`): left unset, they are derived from the
task's shape, the model and the objective; set, the user's value wins. `resolved()` fills them in, and a
run's config.json, its key and everything the loop reads are of the resolved config."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
import typing
from dataclasses import dataclass

from .graphs import PathStar, TaskError
from .models import MODELS, PRETRAINED
from .objectives import MODES, OBJECTIVE_FIELDS, OBJECTIVE_MODELS
from .objectives.diffusion import WEIGHTS as DIFFUSION_WEIGHTS
from .recipe import recipe

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Fields written to config.json (and hashed into the key) only when they differ from these values, so a
# field added later leaves the configs and keys of every earlier run unchanged. A None field that is not
# the recipe's is also left out (weights, data files, the objectives' own settings under other modes).
OMITTED_AT_DEFAULT = {"only_position": 0, "compile": False, "diffusion_weight": "token"}
# Fields that say how a run is carried out, not what is run: left out of the key, free to change on resume.
RUN_ONLY = ("ckpt_every", "device", "compile")
# Bounds that keep a config inside what a machine can hold, so a typo is refused at once and never ends in
# an allocation error minutes later.
MAX_SEQUENCE = 4096  # tokens of prefix + target a model reads
MAX_TEST = 10_000_000
MAX_TRAIN = 100_000_000
MAX_BATCH = 1 << 20  # graphs in one optimiser step
MAX_LAYERS = 1024
MAX_PARAMS = 1_000_000_000  # parameters of a gpt or mamba model (about 12 * layers * dim^2 + 2 * vocab * dim)
SEEDS = (-(1 << 63), (1 << 64) - 1)  # the seeds torch.manual_seed takes


@dataclass
class RunConfig:
    # task
    deg: int = 2
    path_len: int = 5
    num_nodes: int = 20
    mode: str = "forward"  # an objective: see nexttok.objectives
    only_position: int = 0  # grade this target position alone (1-based, in target order); 0 grades all
    # the objectives' own settings (None: the recipe's, for the mode that uses it)
    mtp_heads: int | None = None  # mtp: output heads; head j predicts the token j places ahead
    input_dropout: float | None = None  # dropout: probability that a target-side input is replaced by "$"
    hybrid_fraction: float | None = None  # hybrid: the fraction of a batch's graphs that get a teacherless copy
    diffusion_weight: str = "token"  # diffusion: "token" (mean over masked tokens) or "elbo" (1/r per sequence)
    # model (None: the recipe's)
    model: str = "gpt"  # gpt | mamba | a pretrained name (then layers, dim and heads are ignored)
    layers: int | None = None
    dim: int | None = None
    heads: int | None = None
    positions: str | None = None  # gpt: rope | learned (the authors' GPT learns absolute positions)
    weights: str | None = None  # pretrained models: a local folder written by save_pretrained (default: the hub)
    init_from: str | None = None  # start from the weights of another run's checkpoint (a file or its run folder)
    # optimisation: AdamW, linear warm-up then cosine decay to min_lr_ratio * lr, over optimiser steps
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup: int | None = None
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    # data: n_train == 0 draws fresh graphs every step; otherwise a fixed train set (as the authors)
    n_train: int = 0
    n_test: int = 2048
    train_file: str | None = None
    test_file: str | None = None
    # bookkeeping: every eval_every steps the first n_eval test graphs are evaluated (the history); at the
    # end all n_test of them (the final metrics)
    eval_every: int = 50
    n_eval: int = 512
    ckpt_every: int = 250
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the training step's model (pays on a GPU; not on the 2-core CPU)

    def __post_init__(self):
        _check_types(self)
        present = lambda v: v is not None  # noqa: E731  (None: the recipe fills it in later)
        checks = [
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)} (got {self.mode!r})"),
            (self.model in MODELS, f"model must be one of {', '.join(MODELS)} (got {self.model!r})"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)} (got {self.device!r})"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})"),
            (all(getattr(self, k) is None or getattr(self, k) >= 1 for k in ("layers", "dim", "heads")),
             "layers, dim and heads must be positive"),
            (self.weights is None or self.model in PRETRAINED, "--weights is for the pretrained models only"),
            (self.positions in (None, "rope", "learned"), f"positions must be rope or learned (got {self.positions!r})"),
            (self.positions is None or self.model == "gpt", "--positions is for the gpt model only"),
            (all(getattr(self, k) is None or getattr(self, k) >= 1 for k in ("steps", "batch_size")),
             "steps and batch size must be positive"),
            (self.batch_size is None or self.batch_size <= MAX_BATCH, f"batch size must be at most {MAX_BATCH:,}"),
            (self.layers is None or self.layers <= MAX_LAYERS, f"layers must be at most {MAX_LAYERS}"),
            (SEEDS[0] <= self.seed <= SEEDS[1], "seed must be in -2**63..2**64-1 (the seeds torch takes)"),
            (not present(self.lr) or 0 < self.lr <= 1, f"lr must be in (0, 1] (got {self.lr})"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
            ((self.warmup is None or self.warmup >= 0) and self.weight_decay >= 0 and self.grad_clip >= 0,
             "warmup, weight decay and grad clip must be >= 0"),
            (0 <= self.n_train <= MAX_TRAIN, f"n_train must be in 0..{MAX_TRAIN:,}"),
            (1 <= self.n_test <= MAX_TEST, f"n_test must be in 1..{MAX_TEST:,}"),
            (self.n_eval >= 1, "n_eval must be positive"),
            (0 <= self.only_position <= self.path_len, f"only_position must be 0 (all) or a target position 1..{self.path_len}"),
            (self.eval_every >= 1 and self.ckpt_every >= 1, "eval_every and ckpt_every must be positive"),
            (self.mtp_heads is None or self.mtp_heads >= 1, f"--mtp-heads must be at least 1 (got {self.mtp_heads})"),
            (self.input_dropout is None or 0 <= self.input_dropout <= 1,
             f"--input-dropout must be in [0, 1] (got {self.input_dropout})"),
            (self.hybrid_fraction is None or 0 < self.hybrid_fraction <= 1,
             f"--hybrid-fraction must be in (0, 1] (got {self.hybrid_fraction})"),
            (self.diffusion_weight in DIFFUSION_WEIGHTS,
             f"diffusion_weight must be one of {', '.join(DIFFUSION_WEIGHTS)} (got {self.diffusion_weight!r})"),
            (self.init_from is None or self.model in ("gpt", "mamba"), "--init-from is for the gpt and mamba models"),
        ]
        for mode, models in OBJECTIVE_MODELS.items():
            checks.append((self.mode != mode or self.model in models,
                           f"--mode {mode} trains the {' or '.join(models)} model only (got --model {self.model})"))
        for name, modes in OBJECTIVE_FIELDS.items():
            checks.append((getattr(self, name) == FIELD_DEFAULTS[name] or self.mode in modes,
                           f"--{name.replace('_', '-')} is for --mode {' or '.join(modes)} only"))
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise TaskError("; ".join(problems))
        if not (self.train_file or self.test_file):
            task = self.task  # validates deg, path_len, num_nodes
            if task.sequence_len > MAX_SEQUENCE:
                raise TaskError(f"G({self.deg},{self.path_len}) is {task.sequence_len} tokens long; the models "
                                f"here read at most {MAX_SEQUENCE}")
            if self.n_train and not task.has_distinct_graphs(self.n_train + self.n_test):
                raise TaskError(f"G({self.deg},{self.path_len}) with num_nodes={self.num_nodes} has only "
                                f"{task.distinct_graphs:,} distinct graphs, fewer than n_train + n_test = "
                                f"{self.n_train + self.n_test:,}; use more nodes or fewer graphs")
        resolved = self.resolved()
        if resolved.model == "gpt" and resolved.dim % resolved.heads:
            raise TaskError(f"dim {resolved.dim} is not divisible by heads {resolved.heads}")
        if resolved.model in ("gpt", "mamba"):
            params = 12 * resolved.layers * resolved.dim ** 2 + 2 * (resolved.num_nodes + 4) * resolved.dim
            if params > MAX_PARAMS:
                raise TaskError(f"--layers {resolved.layers} --dim {resolved.dim} is a model of about {params:.2g} "
                                f"parameters, more than the {MAX_PARAMS:,} this package trains")

    @property
    def task(self) -> PathStar:
        return PathStar(self.deg, self.path_len, self.num_nodes)

    def resolved(self) -> "RunConfig":
        """This config with every field left to the recipe filled in (the user's values kept)."""
        unset = {k: v for k, v in recipe(self).items() if getattr(self, k) is None}
        return dataclasses.replace(self, **unset) if unset else self

    def to_dict(self) -> dict:
        """The resolved config as config.json holds it."""
        d = dataclasses.asdict(self.resolved())
        return {k: v for k, v in d.items() if v is not None and OMITTED_AT_DEFAULT.get(k, object()) != v}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        if not isinstance(d, dict):
            raise TaskError(f"a config is a mapping of field names to values (got {type(d).__name__})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TaskError(f"unknown config keys: {', '.join(sorted(map(str, unknown)))}")
        return cls(**d)

    def key(self) -> str:
        """A short hash of everything that defines the run. How often it checkpoints, which device runs it
        and whether the step is compiled do not change what is run, so they are left out; data files
        count by their contents, not their paths."""
        d = self.to_dict()
        for k in RUN_ONLY:
            d.pop(k, None)
        for k in ("train_file", "test_file", "init_from"):
            if k in d:
                d[k] = file_digest(checkpoint_file(d[k]) if k == "init_from" else d[k])
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def checkpoint_file(path: str) -> str:
    """The checkpoint a path names: the file itself, or checkpoint.pt in a run folder."""
    return os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path


def _check_types(cfg: RunConfig) -> None:
    """Every field holds a value of its declared type, whatever the source (a sweep file, papermill, Python):
    an int field takes no bool, no float and no string, so `steps: 5.5` or `steps: true` is refused here
    rather than crashing (or silently running one step) later."""
    hints = typing.get_type_hints(RunConfig)
    problems = []
    for f in dataclasses.fields(cfg):
        value, hint = getattr(cfg, f.name), hints[f.name]
        allowed = typing.get_args(hint) or (hint,)
        if value is None and type(None) in allowed:
            continue
        ok = any(_is_a(value, kind) for kind in allowed if kind is not type(None))
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            want = " or ".join("a number" if k is float else f"an {k.__name__}" if k is int else f"a {k.__name__}"
                               for k in allowed if k is not type(None))
            problems.append(f"{f.name} must be {want} (got {value!r})")
    if problems:
        raise TaskError("; ".join(problems))


def _is_a(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


# a file changed this recently may change again within the file system's timestamp granularity, keeping its
# size and mtime: its digest is not cached (git's "racily clean" entries)
RACY_NS = 2_000_000_000


def file_digest(path: str) -> str:
    """The SHA-256 of a data file's contents (cached while the file's identity, size and times stay the same,
    and never for a file modified in the last two seconds)."""
    try:
        stat = os.stat(path)
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < RACY_NS:
            return _read_digest(path)
        return _digest(os.path.abspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    except OSError as err:
        raise TaskError(f"{path}: cannot read the data file ({err.strerror})") from None


@functools.lru_cache(maxsize=64)
def _digest(path: str, *identity) -> str:
    return _read_digest(path)


def _read_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
