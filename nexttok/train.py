"""The training loop: AdamW with weight decay on the matrices, linear warm-up then cosine decay over
optimiser steps, gradient clipping, mixed precision on CUDA, periodic evaluation into a history, and
checkpoints that a resumed run continues from bit for bit (on the CPU).

What the loop trains is the run's objective (`nexttok.objectives`): it asks the objective for the network,
for each batch's loss and, through the evaluation, for what to grade; it never branches on a mode's name.
The run folder's services (its lock, atomic writes, the checkpoint's digest, signals) are `nexttok.rundir`'s.
"""
from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .config import RunConfig
from .data import load_data
from .devices import autocast, resolve_device, resolve_precision
from .evaluate import evaluate
from .graphs import TaskError, seeded_generator
from .mechanisms import position_gradient_norms
from .memory import check_memory
from .objectives import objective
from .records import finite_json, flatten, git_commit, provenance, write_table
from .resolve import resolve
from .rundir import (Interrupted, data_digests, finish_step_on_signal, load_optimizer_state, read_checkpoint,
                     read_run_checkpoint, run_folder, save_checkpoint, start_checkpoint, write_text)
from .tokens import Vocab

GRADIENT_GRAPHS = 256  # held-out graphs the per-position gradient norms are measured on


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


class Run:
    """A model, its data and its optimiser, set up from a config: what train() drives and what a
    notebook inspects."""

    def __init__(self, cfg: RunConfig, runs: Path | None = None):
        """`runs`: the run cache where a warm start given by a run's name is found (rundir.start_checkpoint)."""
        self.cfg = cfg = resolve(cfg)
        self.objective = objective(cfg)
        self.shard, device_name = distributed.setup(cfg.device)
        if cfg.batch_size % self.shard.world:
            raise TaskError(f"batch size {cfg.batch_size} does not split evenly over {self.shard.world} processes")
        self.device = resolve_device(device_name)
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats are very slow on x86 CPUs
        check_memory(cfg, self.device, self.shard.world)  # refused by its sizes before anything is allocated
        self.train_data, self.test, self.task = load_data(cfg, self.device, self.shard)
        self.vocab = Vocab(self.task.num_nodes)
        torch.manual_seed(cfg.seed)
        self.model = self.objective.build(cfg, self.vocab, self.task).to(self.device)
        if cfg.init_from:  # warm start (a curriculum's next stage): the weights only, a fresh optimiser and schedule
            start = start_checkpoint(cfg.init_from, runs)
            self.model.load_state_dict(read_checkpoint(start, self.device, self.model)["model"])
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
        return {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "loss_sum": self.loss_sum.item(),
            "loss_count": self.loss_count,
            "files": data_digests(self.cfg),  # the data's contents this run read: a changed file is refused on resume
        }

    def save(self, path: Path) -> None:
        save_checkpoint(self.state(), path)

    def load(self, path: Path) -> None:
        """Resume from a checkpoint of this run's config (`rundir.read_run_checkpoint`)."""
        state = read_run_checkpoint(path, self.device, self.model, self.cfg)
        self.model.load_state_dict(state["model"])
        load_optimizer_state(path, state, self.optimizer, self.scaler)
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


def train(cfg: RunConfig, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> tuple[Run, dict]:
    """Train a run to cfg.steps; write config.json, metrics.json, history.csv and checkpoint.pt to
    out_dir (when given). Returns the run and its final metrics. Under torchrun every rank trains and
    rank 0 alone evaluates and writes."""
    out = Path(out_dir) if out_dir is not None else None
    run = Run(cfg, out.parent if out is not None else None)  # a run's name to start from is looked up beside it
    cfg, main = run.cfg, run.shard.is_main
    # the code that trains is the code now (the tree may change before the run ends); read only where it is written
    commit = git_commit() if out and main else None
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
                       json.dumps(provenance(cfg, run.device, run.train_seconds, commit, run.shard.world), indent=2) + "\n")
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
                    probe = {"grad_norm_by_position": run.gradient_norms()} if cfg.probe_gradients else {}
                    run.history.append({"step": run.step, "lr": lr_at(run.step - 1, cfg), "train_loss": train_loss,
                                        **metrics, **probe})
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
