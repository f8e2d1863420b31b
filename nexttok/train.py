"""The training loop: AdamW with weight decay on the matrices, linear warm-up then cosine decay over
optimiser steps, gradient clipping, mixed precision on CUDA, periodic evaluation into a history, and
checkpoints that a resumed run continues from bit for bit (on the CPU).

What the loop trains is the run's objective (`nexttok.objectives`): it asks the objective for the network,
for each batch's loss and, through the evaluation, for what to grade; it never branches on a mode's name.

A run folder is never shared: the process that trains in it holds a lock on it, writes every file under a
name of its own first, and refuses a folder that holds another run or files that are not a run's.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .config import RunConfig, checkpoint_file
from .data import load_data
from .evaluate import evaluate
from .graphs import TaskError, one_line, seeded_generator
from .mechanisms import position_gradient_norms
from .objectives import objective
from .records import finite_json, flatten, provenance, write_table
from .tokens import Vocab

CHECKPOINT_KEYS = ("config", "model", "optimizer", "scaler", "step", "history", "train_seconds", "loss_sum",
                   "loss_count", "digest")
# what a run folder may hold: the run's own files (and their temporary names)
RUN_FILES = ("config.json", "metrics.json", "history.csv", "provenance.json", "checkpoint.pt", ".lock")
GRADIENT_GRAPHS = 256  # held-out graphs the per-position gradient norms are measured on


class FolderLocked(TaskError):
    """Another process holds the run folder's lock (it is training there)."""


class Interrupted(TaskError):
    """Training stopped on a signal after saving a checkpoint; `signum` says which signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TaskError("--device cuda was asked for but CUDA is not available")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """auto: bf16 on a GPU that computes it natively (A100, H100, ...), fp16 with loss scaling on one that would
    only emulate it (a T4, where bf16 is slow); fp32 on the CPU (exact and deterministic)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "fp32"


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to min_lr_ratio * lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg: RunConfig, device: torch.device):
    """AdamW; matrices and embeddings are decayed; biases, norm gains and the parameters a block marks
    `_no_weight_decay` (Mamba's A_log and D) are not."""
    params = [p for p in model.parameters() if p.requires_grad]
    decayed = [p.dim() >= 2 and not getattr(p, "_no_weight_decay", False) for p in params]
    groups = [
        {"params": [p for p, d in zip(params, decayed) if d], "weight_decay": cfg.weight_decay},
        {"params": [p for p, d in zip(params, decayed) if not d], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


class TrainingLoss(torch.nn.Module):
    """The objective's loss as a module, so DistributedDataParallel (and torch.compile) wrap one call that
    covers whatever parts of the network the objective uses."""

    def __init__(self, model, objective_, vocab: Vocab):
        super().__init__()
        self.model, self.objective, self.vocab = model, objective_, vocab

    def forward(self, graphs, generator):
        return self.objective.loss(self.model, graphs, self.vocab, generator)


def state_digest(state) -> str:
    """A SHA-256 of a checkpoint's contents (every tensor's bytes, every number), in a fixed order."""
    h = hashlib.sha256()

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"tensor{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            for k in sorted(obj, key=repr):
                h.update(repr(k).encode())
                walk(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for x in obj:
                walk(x)
            h.update(b"]")
        else:
            h.update(repr(obj).encode())

    walk(state)
    return h.hexdigest()


class Run:
    """A model, its data and its optimiser, set up from a config: what train() drives and what a
    notebook inspects."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg = cfg.resolved()
        self.objective = objective(cfg)
        self.shard, device_name = distributed.setup(cfg.device)
        if cfg.batch_size % self.shard.world:
            raise TaskError(f"batch size {cfg.batch_size} does not split evenly over {self.shard.world} processes")
        self.device = resolve_device(device_name)
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats are very slow on x86 CPUs
        self.train_data, self.test, self.task = load_data(cfg, self.device, self.shard)
        self.vocab = Vocab(self.task.num_nodes)
        torch.manual_seed(cfg.seed)
        self.model = self.objective.build(cfg, self.vocab, self.task).to(self.device)
        if cfg.init_from:  # warm start (a curriculum's next stage): the weights only, a fresh optimiser and schedule
            self.model.load_state_dict(read_checkpoint(Path(checkpoint_file(cfg.init_from)), self.device, self.model)["model"])
        # what the training step calls: under torchrun, DDP averages the gradients over the ranks
        self.trained = TrainingLoss(self.model, self.objective, self.vocab)
        if self.shard.world > 1:
            self.trained = torch.nn.parallel.DistributedDataParallel(
                self.trained, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:  # compiled around DDP, as PyTorch recommends; evaluation runs the plain model
            self.trained = torch.compile(self.trained)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step = 0
        self.history: list[dict] = []
        self.train_seconds = 0.0
        # the training loss summed since the last evaluation (kept on the device: no sync per step)
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
        # the first step whose loss was not finite (0: none yet), also kept on the device
        self.first_bad_step = torch.zeros((), dtype=torch.long, device=self.device)

    def add_loss(self, loss: torch.Tensor) -> None:
        """Count a training step's loss (after the step: self.step is its 1-based number)."""
        self.loss_sum += loss
        self.loss_count += 1
        bad = (self.first_bad_step == 0) & ~torch.isfinite(loss)
        self.first_bad_step = torch.where(bad, self.step, self.first_bad_step)

    def train_step(self) -> torch.Tensor:
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        graphs = self.train_data.batch(self.step)
        randomness = seeded_generator(self.cfg.seed, "objective", self.step, device=self.device)
        with autocast(self.precision, self.device):
            loss = self.trained(graphs, randomness)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss.detach()

    def evaluate(self, graphs=None) -> dict:
        with autocast(self.precision, self.device):
            return evaluate(self.model, self.objective, self.test if graphs is None else graphs, self.vocab)

    def gradient_norms(self, n: int = GRADIENT_GRAPHS) -> list[float]:
        """Per target position, the gradient norm of its loss on the first n test graphs (see mechanisms)."""
        with autocast(self.precision, self.device):
            return position_gradient_norms(self.model, self.objective, self.test[:n], self.vocab)

    # --- checkpoints ---
    def state(self) -> dict:
        state = {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "loss_sum": self.loss_sum.item(),
            "loss_count": self.loss_count,
        }
        return {**state, "digest": state_digest(state)}

    def save(self, path: Path) -> None:
        """Atomically: a temporary name of this process's own, then a rename, so an interrupted save never
        leaves a broken checkpoint and two processes never write the same file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(self.state(), tmp)
            os.replace(tmp, path)
        except RuntimeError as err:  # torch reports a full disk as RuntimeError
            raise OSError(f"could not write the checkpoint {path} ({one_line(err)}); is the disk full?") from None
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, path: Path) -> None:
        """Resume from a checkpoint (`read_checkpoint`); it must be a checkpoint of this run's config (device and
        checkpoint interval aside)."""
        state = read_checkpoint(path, self.device, self.model)
        try:
            saved = RunConfig.from_dict(state["config"])
        except TaskError as err:
            raise TaskError(f"{path} holds a config this version cannot read ({err})") from None
        if saved.key() != self.cfg.key():
            mine = self.cfg.to_dict()
            changed = sorted(k for k in set(state["config"]) | set(mine) if state["config"].get(k) != mine.get(k))
            raise TaskError(f"{path} was written by a run with other settings ({', '.join(changed)}); use another --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.history, self.train_seconds = state["step"], state["history"], state["train_seconds"]
        self.loss_sum.fill_(state["loss_sum"])
        self.loss_count = state["loss_count"]

    def check_finite(self) -> None:
        """Stop a diverged run before it writes a checkpoint or a metric: a loss that was not finite at some
        step since the last check, or weights that are not (a step can overflow the gradients while its loss
        is still finite)."""
        first_bad = int(self.first_bad_step)
        if first_bad or not torch.isfinite(self.loss_sum):
            where = f"at step {first_bad}" if first_bad else f"by step {self.step}"
            raise TaskError(f"training diverged {where}: the loss is not finite (lr {self.cfg.lr:g}); nothing after "
                            "the last good checkpoint is kept; lower --lr")
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()):
            raise TaskError(f"training diverged by step {self.step}: the weights are not finite (lr {self.cfg.lr:g}); "
                            "nothing after the last good checkpoint is kept; lower --lr")


def read_checkpoint(path: Path, device, model) -> dict:
    """A checkpoint, read as data only (never as code: weights_only), its digest checked, and its weights of
    `model`'s names and shapes."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated, empty, corrupt, missing or foreign file: torch raises many kinds
        raise TaskError(f"{path} is not a readable checkpoint ({type(err).__name__}: {one_line(err, 200)}); "
                        "delete it to start over") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise TaskError(f"{path} is not a nexttok checkpoint (missing {', '.join(missing)}); delete it to start over")
    if state_digest({k: v for k, v in state.items() if k != "digest"}) != state["digest"]:
        raise TaskError(f"{path} is corrupt (its contents do not match its digest); delete it to start over")
    mine = model.state_dict()
    weights = state["model"] if isinstance(state["model"], dict) else {}
    wrong = sorted(set(mine) ^ set(weights)) + sorted(
        k for k in set(mine) & set(weights)
        if not isinstance(weights[k], torch.Tensor) or weights[k].shape != mine[k].shape)
    if wrong:
        raise TaskError(f"{path} holds weights of another model ({len(wrong)} differ in name or shape, e.g. "
                        f"{one_line(wrong[0], 80)}): the model, its size and the task's vocabulary must match")
    return state


STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def finish_step_on_signal():
    """Ctrl-C (SIGINT), and the SIGTERM / SIGHUP that Slurm, docker and `timeout` send, set a flag instead of
    raising inside a step, so the loop can save a consistent checkpoint after the step it was in, then stop."""
    flag = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, lambda signum, _: flag.update(signum=signum)) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def run_folder(out: Path | None, cfg: RunConfig, resume: bool, main: bool):
    """Claim the run folder `out` for this process: lock it, and refuse a folder that another process is
    training in, that holds a finished or other run (unless resuming it), or that holds files a run does not
    write. A refused folder is left as it was (no lock file is added to a folder of someone else's files).
    Yields the checkpoint path (None when there is no folder); the caller writes config.json once it has
    read the checkpoint, so a refused resume leaves the folder's config as it was."""
    if out is None:
        yield None
        return
    ckpt = out / "checkpoint.pt"
    if not main:
        yield ckpt
        return
    if out.exists() and not out.is_dir():
        raise TaskError(f"--out {out} is a file, not a folder")
    if out.is_dir():
        _check_folder(out, cfg, resume, locked=False)  # a folder of someone's own files gets no lock file
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLocked(f"another process is training in {out}; wait for it or choose another --out") from None
        _check_folder(out, cfg, resume, locked=True)
        yield ckpt


def _check_folder(out: Path, cfg: RunConfig, resume: bool, locked: bool) -> None:
    """Refuse a folder that holds files a run does not write, a config.json that is not a run's, or a finished
    run; once the folder is locked (no other process is training in it), also a run to continue without
    --resume, or a run of another config that stopped before its first checkpoint."""
    ckpt = out / "checkpoint.pt"
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.endswith(".tmp"))
    if foreign:
        raise TaskError(f"--out {out} holds files that are not a run's ({', '.join(foreign[:5])}); choose an "
                        "empty or new folder")
    if (out / "metrics.json").exists():  # written last, so no process is training here any more
        raise TaskError(f"{out} holds a finished run (--resume reports it); choose another --out for a new one")
    # a config.json beside no checkpoint: the user's own file, or a run that stopped before its first checkpoint
    # (beside a checkpoint, the checkpoint's own config is checked when it is loaded)
    if (out / "config.json").exists() and not ckpt.exists():
        try:
            theirs = RunConfig.from_dict(json.loads((out / "config.json").read_text())).key()
        except (ValueError, TaskError, OSError):  # not JSON, not a config, not readable, a data file gone
            raise TaskError(f"{out}/config.json is not a run's config; choose another --out") from None
        if locked and theirs != cfg.key():
            raise TaskError(f"{out}/config.json is not this run's config; choose another --out")
    if locked and ckpt.exists() and not resume:
        raise TaskError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")


def write_text(path: Path, text: str) -> None:
    """Write a file atomically under a temporary name of this process's own."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def train(cfg: RunConfig, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> tuple[Run, dict]:
    """Train a run to cfg.steps; write config.json, metrics.json, history.csv and checkpoint.pt to
    out_dir (when given). Returns the run and its final metrics. Under torchrun every rank trains and
    rank 0 alone evaluates and writes."""
    run = Run(cfg)
    cfg, main = run.cfg, run.shard.is_main
    out = Path(out_dir) if out_dir is not None else None
    with run_folder(out, cfg, resume, main) as ckpt:
        if ckpt is not None and ckpt.exists() and resume:
            run.load(ckpt)
        if out and main:
            write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        distributed.barrier(run.shard)  # every rank has read the checkpoint before rank 0 writes one
        _loop(run, ckpt, progress and main)
        distributed.barrier(run.shard)  # rank 0's last checkpoint is on disk before anyone leaves
        if not main:
            return run, {}
        final = {**{k: v for k, v in run.history[-1].items() if k not in ("step", "lr", "train_loss", "grad_norm_by_position")},
                 "steps": run.step, "train_seconds": round(run.train_seconds, 2)}
        final = finite_json(final)
        if out:  # metrics.json last: its presence marks a finished run
            write_table([flatten(finite_json(h)) for h in run.history], out / "history.csv")
            write_text(out / "provenance.json",
                       json.dumps(provenance(cfg, run.device, run.train_seconds, run.shard.world), indent=2) + "\n")
            write_text(out / "metrics.json", json.dumps(final, indent=2, allow_nan=False) + "\n")
    return run, final


def _loop(run: Run, ckpt: Path | None, progress: bool) -> None:
    cfg, main = run.cfg, run.shard.is_main
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not progress,
               desc=f"{cfg.mode} G({run.task.deg},{run.task.path_len})")
    with finish_step_on_signal() as stopped:
        while run.step < cfg.steps:
            started = time.perf_counter()
            run.add_loss(run.train_step())
            if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
                run.check_finite()
                train_loss = distributed.mean_over_ranks(run.loss_sum, run.shard).item() / run.loss_count
                run.loss_sum.zero_()
                run.loss_count = 0
                if main:
                    # the history evaluates the first n_eval test graphs; the last evaluation all of them
                    graphs = run.test if run.step == cfg.steps else run.test[: cfg.n_eval]
                    metrics = run.evaluate(graphs)
                    run.history.append({"step": run.step, "lr": lr_at(run.step - 1, cfg), "train_loss": train_loss,
                                        **metrics, "grad_norm_by_position": run.gradient_norms()})
                    bar.set_postfix(loss=f"{train_loss:.3f}", gen_acc=f"{metrics['gen_accuracy']:.2f}")
            run.train_seconds += time.perf_counter() - started
            bar.update(1)
            signum = distributed.any_rank(stopped["signum"], run.shard)
            if ckpt and (run.step % cfg.ckpt_every == 0 or run.step == cfg.steps or signum):
                run.check_finite()
                # the checkpoint holds the loss summed so far averaged over ranks, so every rank resumes alike
                run.loss_sum = distributed.mean_over_ranks(run.loss_sum, run.shard)
                if main:
                    run.save(ckpt)
            if signum:
                bar.close()
                where = f"checkpoint saved, continue with --resume --out {ckpt.parent}" if ckpt else "nothing saved (no --out)"
                raise Interrupted(f"interrupted ({signal.Signals(signum).name}) at step {run.step}; {where}", signum)
    bar.close()
