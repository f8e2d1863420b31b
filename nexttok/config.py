"""One dataclass describes a run. The CLI flags, the notebooks' parameters and the run cache all map
onto it; its hash names a cached run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from .graphs import PathStar, TaskError
from .objectives import MODES

# pretrained Hugging Face models (nexttok[pretrained]): short name -> hub id; --weights DIR loads a local copy
PRETRAINED = {
    "gpt2": "openai-community/gpt2", "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large", "gpt2-xl": "openai-community/gpt2-xl",
    **{f"pythia-{size}{dedup}": f"EleutherAI/pythia-{size}{dedup}"
       for size in ("70m", "160m", "410m", "1b") for dedup in ("", "-deduped")},
}
MODELS = ("gpt", "mamba", *PRETRAINED)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class RunConfig:
    # task
    deg: int = 2
    path_len: int = 5
    num_nodes: int = 20
    mode: str = "forward"  # forward | reverse | teacherless
    only_position: int = 0  # grade this target position alone (1-based, in target order); 0 grades all
    # model
    model: str = "gpt"  # gpt | mamba | a pretrained name (then layers, dim and heads are ignored)
    layers: int = 2
    dim: int = 96
    heads: int = 6
    weights: str | None = None  # pretrained models: a local folder written by save_pretrained (default: the hub)
    # optimisation: AdamW, linear warm-up then cosine decay to min_lr_ratio * lr, over optimiser steps
    steps: int = 1200
    batch_size: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    # data: n_train == 0 draws fresh graphs every step; otherwise a fixed train set (as the authors)
    n_train: int = 0
    n_test: int = 2048
    train_file: str | None = None
    test_file: str | None = None
    # bookkeeping
    eval_every: int = 100
    ckpt_every: int = 250
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the training step's model (pays on a GPU; not on the 2-core CPU)

    def __post_init__(self):
        checks = [
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)} (got {self.mode!r})"),
            (self.model in MODELS, f"model must be one of {', '.join(MODELS)} (got {self.model!r})"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)} (got {self.device!r})"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})"),
            (self.layers >= 1 and self.dim >= 1 and self.heads >= 1, "layers, dim and heads must be positive"),
            (self.weights is None or self.model in PRETRAINED, "--weights is for the pretrained models only"),
            (self.model != "gpt" or self.dim % self.heads == 0, f"dim {self.dim} is not divisible by heads {self.heads}"),
            (self.steps >= 1 and self.batch_size >= 1, "steps and batch size must be positive"),
            (self.lr > 0 and 0 <= self.min_lr_ratio <= 1, "lr must be positive and min_lr_ratio in [0, 1]"),
            (self.warmup >= 0 and self.weight_decay >= 0 and self.grad_clip >= 0, "warmup, weight decay, clip >= 0"),
            (self.n_train >= 0 and self.n_test >= 1, "n_train must be >= 0 and n_test >= 1"),
            (0 <= self.only_position <= self.path_len, f"only_position must be 0 (all) or a target position 1..{self.path_len}"),
            (self.eval_every >= 1 and self.ckpt_every >= 1, "eval_every and ckpt_every must be positive"),
        ]
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise TaskError("; ".join(problems))
        if not (self.train_file or self.test_file):
            self.task  # validates deg, path_len, num_nodes

    @property
    def task(self) -> PathStar:
        return PathStar(self.deg, self.path_len, self.num_nodes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["weights"] is None:  # absent unless set: configs from before the field keep their hash and checkpoints
            del d["weights"]
        if d["only_position"] == 0:  # likewise: grading every position is the default
            del d["only_position"]
        if not d["compile"]:
            del d["compile"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TaskError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def key(self) -> str:
        """A short hash of everything that defines the run (how often it checkpoints, which device runs it
        and whether the step is compiled do not change what is being run, so they are left out)."""
        d = self.to_dict()
        for k in ("ckpt_every", "device", "compile"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
