"""The training loop: AdamW with weight decay on the matrices, linear warm-up then cosine decay over
optimiser steps, gradient clipping, mixed precision on CUDA, periodic evaluation into a history, and
checkpoints that a resumed run continues from bit for bit (on the CPU)."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import RunConfig
from .data import load_data
from . import distributed
from .evaluate import evaluate
from .mechanisms import position_gradient_norms
from .graphs import TaskError
from .models import build_model
from .objectives import make_view, target_loss
from .runs import flatten, provenance, write_table
from .tokens import Vocab, prefix_len


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TaskError("--device cuda was asked for but CUDA is not available")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """auto: bf16 on CUDA (fp16 where bf16 is missing); fp32 on the CPU (exact and deterministic)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
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


class Run:
    """A model, its data and its optimiser, set up from a config: what train() drives and what a
    notebook inspects."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.shard, device_name = distributed.setup(cfg.device)
        if cfg.batch_size % self.shard.world:
            raise TaskError(f"batch size {cfg.batch_size} does not split evenly over {self.shard.world} processes")
        self.device = resolve_device(device_name)
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats are very slow on x86 CPUs
        self.train_data, self.test, self.task = load_data(cfg, self.device, self.shard)
        self.vocab = Vocab(self.task.num_nodes)
        block_size = prefix_len(self.task.num_edges) + self.task.path_len - 1
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, self.vocab.size, block_size).to(self.device)
        # what the training step calls: under torchrun, DDP averages the gradients over the ranks
        self.trained = self.model
        if self.shard.world > 1:
            self.trained = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:  # compiled around DDP, as PyTorch recommends; evaluation runs the plain model
            self.trained = torch.compile(self.trained)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step = 0
        self.history: list[dict] = []
        self.train_seconds = 0.0
        # the training loss summed since the last evaluation (kept on the device: no sync per step)
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0

    def train_step(self) -> torch.Tensor:
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = make_view(self.train_data.batch(self.step), self.vocab, self.cfg.mode)
        with autocast(self.precision, self.device):
            loss = target_loss(self.trained(inputs, n_out=targets.shape[1]), targets, self.cfg.only_position)
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
            return evaluate(self.model, self.test if graphs is None else graphs, self.vocab, self.cfg.mode)

    def gradient_norms(self, n: int = 256) -> list[float]:
        """Per target position, the gradient norm of its loss on the first n test graphs (see mechanisms)."""
        with autocast(self.precision, self.device):
            return position_gradient_norms(self.model, self.test[:n], self.vocab, self.cfg.mode)

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
        }

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a broken checkpoint

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["config"] != self.cfg.to_dict():
            changed = sorted(k for k in state["config"] if state["config"][k] != self.cfg.to_dict().get(k))
            raise TaskError(f"{path} was written by a run with other settings ({', '.join(changed)}); use another --out")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.history, self.train_seconds = state["step"], state["history"], state["train_seconds"]
        self.loss_sum.fill_(state["loss_sum"])
        self.loss_count = state["loss_count"]


@contextlib.contextmanager
def finish_step_on_interrupt():
    """Ctrl-C (SIGINT) sets a flag instead of raising inside a step, so the loop can save a consistent
    checkpoint after the step it was in, then stop."""
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.update(set=True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train(cfg: RunConfig, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> tuple[Run, dict]:
    """Train a run to cfg.steps; write config.json, metrics.json, history.csv and checkpoint.pt to
    out_dir (when given). Returns the run and its final metrics. Under torchrun every rank trains and
    rank 0 alone evaluates and writes."""
    run = Run(cfg)
    main = run.shard.is_main
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / "checkpoint.pt" if out else None
    if out:
        if ckpt.exists() and resume:
            run.load(ckpt)
        elif (out / "metrics.json").exists() or ckpt.exists():
            raise TaskError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        distributed.barrier(run.shard)  # every rank has looked before rank 0 writes
        if main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    bar = tqdm(total=cfg.steps, initial=run.step, disable=not (progress and main),
               desc=f"{cfg.mode} G({run.task.deg},{run.task.path_len})")
    with finish_step_on_interrupt() as interrupted:
        while run.step < cfg.steps:
            started = time.perf_counter()
            run.loss_sum += run.train_step()
            run.loss_count += 1
            if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
                train_loss = distributed.mean_over_ranks(run.loss_sum, run.shard).item() / run.loss_count
                run.loss_sum.zero_()
                run.loss_count = 0
                if main:
                    metrics = run.evaluate()
                    run.history.append({"step": run.step, "lr": lr_at(run.step - 1, cfg), "train_loss": train_loss,
                                        **metrics, "grad_norm_by_position": run.gradient_norms()})
                    bar.set_postfix(loss=f"{train_loss:.3f}", gen_acc=f"{metrics['gen_accuracy']:.2f}")
            run.train_seconds += time.perf_counter() - started
            bar.update(1)
            stop = distributed.any_rank(interrupted["set"], run.shard)
            if ckpt and (run.step % cfg.ckpt_every == 0 or run.step == cfg.steps or stop):
                # the checkpoint holds the loss summed so far averaged over ranks, so every rank resumes alike
                run.loss_sum = distributed.mean_over_ranks(run.loss_sum, run.shard)
                if main:
                    run.save(ckpt)
            if stop:
                bar.close()
                where = f"checkpoint saved, continue with --resume --out {out}" if ckpt else "nothing saved (no --out)"
                raise TaskError(f"interrupted at step {run.step}; {where}")
    bar.close()
    distributed.barrier(run.shard)  # rank 0's last checkpoint is on disk before anyone leaves

    if not main:
        return run, {}
    final = {**{k: v for k, v in run.history[-1].items() if k not in ("step", "lr", "train_loss", "grad_norm_by_position")},
             "steps": run.step, "train_seconds": round(run.train_seconds, 2)}
    if out:  # metrics.json last: its presence marks a finished run
        write_table([flatten(h) for h in run.history], out / "history.csv")
        (out / "provenance.json").write_text(json.dumps(provenance(cfg, run.device, run.train_seconds, run.shard.world), indent=2) + "\n")
        (out / "metrics.json").write_text(json.dumps(final, indent=2) + "\n")
    return run, final
