"""One dataclass describes a run. The CLI flags, the notebooks' parameters, the sweeps and the run cache all map
onto it; its hash names a cached run. This module is the package's ground floor: it imports nothing of nexttok.

A field marked `recipe` that is None is the recipe's (`nexttok.recipe`): `nexttok.resolve.resolve` fills it in from
the task's shape, the model and the objective, checks the config against what the package knows (objectives,
models, the task's shape), and marks it resolved. Only a resolved config has a key and a config.json: the values
the run trains with. A config read back from a run's config.json is resolved as it stands.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import reprlib
import time
import typing
from stat import S_ISREG
from dataclasses import dataclass, field


class TaskError(ValueError):
    """Impossible task parameters, a bad config or malformed task data: the CLI prints it as a one-line error."""


def _recipe():
    """A field the recipe fills in where a config leaves it None."""
    return field(default=None, metadata={"recipe": True})


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Bounds that keep a config inside what a machine can hold, so a typo is refused at once and never ends in an
# allocation error minutes later.
MAX_SEQUENCE = 4096  # tokens of prefix + target a model reads
MAX_TEST = 10_000_000
MAX_TRAIN = 100_000_000
MAX_BATCH = 1 << 20  # graphs in one optimiser step
MAX_LAYERS = 1024
MAX_PARAMS = 1_000_000_000  # parameters of a gpt or mamba model (about 12 * layers * dim^2 + 2 * vocab * dim)
SEEDS = (-(1 << 63), (1 << 64) - 1)  # the seeds torch.manual_seed takes


@dataclass(frozen=True)
class RunConfig:
    # task
    deg: int = 2
    path_len: int = 5
    num_nodes: int = 20
    mode: str = "forward"  # an objective: see nexttok.objectives
    only_position: int = 0  # grade this target position alone (1-based, in target order); 0 grades all
    # the objectives' own settings (None: the recipe's, for the mode that uses it)
    mtp_heads: int | None = _recipe()  # mtp: output heads; head j predicts the token j places ahead
    input_dropout: float | None = _recipe()  # dropout: probability that a fed-back target token is replaced by "$"
    hybrid_fraction: float | None = _recipe()  # hybrid: the fraction of a batch's graphs also given teacherless
    diffusion_weight: str | None = _recipe()  # diffusion: "token" (mean over masked tokens) or "elbo" (1/r a sequence)
    diffusion_schedule: str | None = _recipe()  # diffusion: how the masking rate is drawn, "uniform" or "cosine"
    # model (None: the recipe's)
    model: str = "gpt"  # gpt | mamba | a pretrained name (then layers, dim and heads are ignored)
    layers: int | None = _recipe()
    dim: int | None = _recipe()
    heads: int | None = _recipe()
    positions: str | None = _recipe()  # gpt: rope | learned (the authors' GPT learns absolute positions)
    weights: str | None = None  # pretrained models: a local folder written by save_pretrained (default: the hub)
    init_from: str | None = None  # start from the weights of another run's checkpoint (a file or its run folder)
    # optimisation: AdamW, linear warm-up then cosine decay to min_lr_ratio * lr, over optimiser steps
    steps: int | None = _recipe()
    batch_size: int | None = _recipe()
    lr: float | None = _recipe()
    min_lr_ratio: float = 0.1
    warmup: int | None = _recipe()
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    # data: n_train == 0 draws fresh graphs every step; otherwise a fixed train set (as the authors)
    n_train: int | None = _recipe()
    n_test: int = 2048
    train_file: str | None = None
    test_file: str | None = None
    # bookkeeping: every eval_every steps the first n_eval test graphs are evaluated (the history); at the end
    # all n_test of them (the final metrics)
    eval_every: int = 50
    n_eval: int = 512
    probe_gradients: bool = False  # record each target position's gradient norm at every evaluation (a probe)
    ckpt_every: int = 250
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the training step's model (pays on a GPU; not on the 2-core CPU)

    def __post_init__(self):
        _check_types(self)
        given = lambda *names: [getattr(self, k) for k in names if getattr(self, k) is not None]  # noqa: E731
        checks = [
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)} (got {self.device!r})"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})"),
            (all(v >= 1 for v in given("layers", "dim", "heads")), "layers, dim and heads must be positive"),
            (self.positions in (None, "rope", "learned"), f"positions must be rope or learned (got {self.positions!r})"),
            (all(v >= 1 for v in given("steps", "batch_size")), "steps and batch size must be positive"),
            (all(v <= MAX_BATCH for v in given("batch_size")), f"batch size must be at most {MAX_BATCH:,}"),
            (all(v <= MAX_LAYERS for v in given("layers")), f"layers must be at most {MAX_LAYERS}"),
            (SEEDS[0] <= self.seed <= SEEDS[1], "seed must be in -2**63..2**64-1 (the seeds torch takes)"),
            (all(0 < v <= 1 for v in given("lr")), f"lr must be in (0, 1] (got {self.lr})"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]"),
            (all(v >= 0 for v in given("warmup")) and self.weight_decay >= 0 and self.grad_clip >= 0,
             "warmup, weight decay and grad clip must be >= 0"),
            (all(0 <= v <= MAX_TRAIN for v in given("n_train")), f"n_train must be in 0..{MAX_TRAIN:,}"),
            (1 <= self.n_test <= MAX_TEST, f"n_test must be in 1..{MAX_TEST:,}"),
            (self.n_eval >= 1, "n_eval must be positive"),
            (0 <= self.only_position <= self.path_len,
             f"only_position must be 0 (all) or a target position 1..{self.path_len}"),
            (self.eval_every >= 1 and self.ckpt_every >= 1, "eval_every and ckpt_every must be positive"),
            (all(v >= 1 for v in given("mtp_heads")), f"--mtp-heads must be at least 1 (got {self.mtp_heads})"),
            (all(0 <= v <= 1 for v in given("input_dropout")), f"--input-dropout must be in [0, 1] (got {self.input_dropout})"),
            (all(0 < v <= 1 for v in given("hybrid_fraction")),
             f"--hybrid-fraction must be in (0, 1] (got {self.hybrid_fraction})"),
            (self.diffusion_weight in (None, "token", "elbo"),
             f"diffusion_weight must be token or elbo (got {self.diffusion_weight!r})"),
            (self.diffusion_schedule in (None, "uniform", "cosine"),
             f"diffusion_schedule must be uniform or cosine (got {self.diffusion_schedule!r})"),
            (not (self.train_file or self.test_file) or bool(self.train_file) == bool(self.test_file),
             "give --train-file and --test-file together"),
        ]
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise TaskError("; ".join(problems))

    # --- what a resolved config is ---
    @property
    def is_resolved(self) -> bool:
        return self.__dict__.get("_resolved", False)

    def mark_resolved(self) -> "RunConfig":
        """Say that every recipe field this run uses is set (nexttok.resolve does it, after its checks)."""
        object.__setattr__(self, "_resolved", True)
        return self

    def to_dict(self) -> dict:
        """The resolved config as config.json holds it: a field at its omitted default (OMITTED_AT_DEFAULT) or None is
        left out, so a field added later leaves the configs and keys of every earlier run unchanged."""
        self._require_resolved()
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if v is not None and OMITTED_AT_DEFAULT.get(k, object()) != v}

    @classmethod
    def from_dict(cls, d: dict, stored: bool = False) -> "RunConfig":
        """A config from a mapping of field names (a sweep's, papermill's). stored=True: a run's config.json or a
        committed row, which holds the resolved values (a field it leaves out is at its omitted default)."""
        if not isinstance(d, dict):
            raise TaskError(f"a config is a mapping of field names to values (got {type(d).__name__})")
        unknown = set(d) - set(FIELDS)
        if unknown:
            names = ", ".join(sorted(name_of(k) for k in unknown))
            raise TaskError(f"unknown config keys: {names if len(names) <= 200 else names[:197] + '...'}")
        cfg = cls(**({**OMITTED_AT_DEFAULT, **d} if stored else d))
        return cfg.mark_resolved() if stored else cfg

    def key(self) -> str:
        """A short hash of everything that defines the run. How often it checkpoints, which device runs it and
        whether the step is compiled do not change what is run, so they are left out; data files count by their
        contents, not their paths, and the weights a run starts from by `start_identity`. It is computed once,
        unless the config names files, whose contents can change under it (their digests have a cache of their own)."""
        if "_key" in self.__dict__:
            return self.__dict__["_key"]
        d = self.to_dict()
        for k in RUN_ONLY:
            d.pop(k, None)
        files = [k for k in ("train_file", "test_file") if k in d]
        for k in files:
            d[k] = file_digest(d[k])
        if "init_from" in d:
            d["init_from"] = start_identity(d["init_from"])
        key = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
        if not files and d.get("init_from", "run:").startswith("run:"):
            object.__setattr__(self, "_key", key)
        return key

    def _require_resolved(self) -> None:
        if not self.is_resolved:
            raise TaskError("this config is not resolved: nexttok.resolve.resolve(cfg) fills in the recipe's values")


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
# the fields the recipe sets where a config leaves them None
RECIPE_FIELDS = tuple(name for name, f in FIELDS.items() if f.metadata.get("recipe"))
# Fields written to config.json (and hashed into the key) only when they differ from these values, so a field added
# later leaves the configs and keys of every earlier run unchanged (its value here is what those runs did).
OMITTED_AT_DEFAULT = {"only_position": 0, "compile": False, "probe_gradients": False, "diffusion_weight": "token",
                      "diffusion_schedule": "uniform"}
# Fields that say how a run is carried out or what it records beside, not what is run: left out of the key, free to
# change on resume. The gradient probe measures without moving the weights (tests/test_runs.py), so a probed run
# is the same run as the unprobed one and serves a request for it.
RUN_ONLY = ("ckpt_every", "device", "compile", "probe_gradients")


def checkpoint_file(path: str) -> str:
    """The checkpoint a path names: the file itself, or checkpoint.pt in a run folder."""
    return os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path


# the name of a run-cache folder: `<mode>-<key>`
RUN_NAME = re.compile(r"[a-z]+-[0-9a-f]{12}")
WHAT_TO_START_FROM = "give a run folder or its checkpoint.pt, or the name of a finished run of the run cache"


def start_identity(init_from: str) -> str:
    """What a warm start is keyed by. A run of a run cache (a folder, or a path ending in its name `<mode>-<key>`)
    by that name, which stands for its config: so the key reads neither folder nor checkpoint, and a committed run
    that started from another keys alike in a clone that holds no checkpoint. Any other checkpoint by its contents."""
    name = os.path.basename(os.path.normpath(init_from))
    if RUN_NAME.fullmatch(name) and not os.path.isfile(init_from):
        return "run:" + name
    checkpoint = checkpoint_file(init_from)
    if not os.path.isfile(checkpoint):
        raise TaskError(f"--init-from {init_from}: no checkpoint there; {WHAT_TO_START_FROM}")
    return file_digest(checkpoint)


def _check_types(cfg: RunConfig) -> None:
    """Every field holds a value of its declared type, whatever the source (a sweep file, papermill, Python):
    an int field takes no bool, no float and no string, so `steps: 5.5` or `steps: true` is refused here
    rather than crashing (or silently running one step) later."""
    hints = _hints()
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
            problems.append(f"{f.name} must be {want} (got {excerpt(value)})")
    if problems:
        raise TaskError("; ".join(problems))


@functools.lru_cache(maxsize=1)
def _hints() -> dict:
    """RunConfig's field types, evaluated once (evaluating them takes most of a config's checks)."""
    return typing.get_type_hints(RunConfig)


def _is_a(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 60, 60, 40


def name_of(key, limit: int = 40) -> str:
    """A key as an error message names it: as it is when it is printable text, else a bounded repr (a key holding a
    line break or a carriage return must not break the message's one line)."""
    if isinstance(key, str) and key.isprintable():
        return key if len(key) <= limit else key[: limit - 3] + "..."
    return excerpt(key, limit)


def excerpt(value, limit: int = 80) -> str:
    """A value as an error message quotes it: a bounded repr (a few items, two levels deep; a sweep's value can be
    huge, and printing it whole can take gigabytes), cut at `limit` characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# a file changed this recently may change again within the file system's timestamp granularity, keeping its
# size and mtime: its digest is not cached (git's "racily clean" entries)
RACY_NS = 2_000_000_000


def file_digest(path: str) -> str:
    """The SHA-256 of a data file's contents (cached while the file's identity, size and times stay the same,
    and never for a file modified in the last two seconds)."""
    try:
        stat = os.stat(path)
        if not S_ISREG(stat.st_mode):
            raise TaskError(f"{path}: not a regular file (a FIFO, a folder or a device); give a data file")
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
