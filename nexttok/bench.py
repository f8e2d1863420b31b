"""`nexttok bench`: how fast this machine trains, generates and samples, and how close training
comes to the machine's own dense matmul speed, measured in the same process."""
from __future__ import annotations

import time

import numpy as np
import torch

from .config import RunConfig
from .graphs import PathStar, sample, seeded_generator
from .tokens import encode, prefix_len
from .runs import device_name
from .train import Run, autocast


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeat: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat


def train_flops_per_sample(cfg: RunConfig, task: PathStar) -> float:
    """Matmul FLOPs of one training sample (forward + backward = 3x forward), counted from the shapes:
    per layer and token 24*C^2 (qkv, projection, 4x MLP), per layer 4*T^2*C for attention scores and
    values (the full square, as PaLM's MFU does), and the tied head on the l target positions only."""
    C, T, L = cfg.dim, prefix_len(task.num_edges) + task.path_len - 1, cfg.layers
    forward = L * (24 * C * C * T + 4 * T * T * C) + 2 * C * (task.num_nodes + 4) * task.path_len
    return 3.0 * forward


def matmul_flops_per_s(device, precision: str, n: int = 2048, repeat: int = 10) -> float:
    """Dense square matmul in the dtype the model trains in: this machine's practical peak."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / _timed(lambda: a @ b, device, repeat)


def python_loop_graphs(task: PathStar, n: int, rng: np.random.Generator) -> list:
    """The baseline: a sampler in the style of the authors', one random number per call in Python
    loops, redrawing a label that is already taken."""
    graphs = []
    for _ in range(n):
        used = set()

        def fresh():
            while True:
                x = int(rng.integers(task.num_nodes))
                if x not in used:
                    used.add(x)
                    return x

        source = fresh()
        arms = [[source] + [fresh() for _ in range(task.path_len - 1)] for _ in range(task.deg)]
        edges = [(a[i], a[i + 1]) for a in arms for i in range(task.path_len - 1)]
        rng.shuffle(edges)
        graphs.append((edges, source, arms[0][-1], arms[0]))
    return graphs


def bench(cfg: RunConfig, train_steps: int = 10, gen_graphs: int = 2048) -> dict:
    run = Run(cfg)
    device, task = run.device, run.task
    step_s = _timed(run.train_step, device, train_steps)
    flops = train_flops_per_sample(cfg, task) * cfg.batch_size / step_s
    peak = matmul_flops_per_s(device, run.precision)

    prefixes = encode(run.test[:gen_graphs], run.vocab)[:, : prefix_len(task.num_edges)]
    with autocast(run.precision, device):  # greedy KV-cache generation of the l target tokens
        gen_s = _timed(lambda: run.model.generate(prefixes, task.path_len), device, 3)

    n_graphs = 100_000
    graphs_s = _timed(lambda: sample(task, n_graphs, seeded_generator(0, "bench", device=device)), device, 3)
    n_loop = 2_000
    loop_s = _timed(lambda: python_loop_graphs(task, n_loop, np.random.default_rng(0)), torch.device("cpu"), 1)
    return {
        "train_samples_per_s": cfg.batch_size / step_s,
        "train_step_ms": 1000 * step_s,
        "train_flops_per_s": flops,
        "matmul_flops_per_s": peak,
        "train_vs_matmul": flops / peak,
        "gen_seqs_per_s": len(prefixes) / gen_s,
        "graphs_per_s": n_graphs / graphs_s,
        "python_loop_graphs_per_s": n_loop / loop_s,
        "precision": run.precision,
        "device": device_name(device),
        "torch": torch.__version__,
        "config": {k: getattr(cfg, k) for k in ("deg", "path_len", "num_nodes", "mode", "model", "layers", "dim", "heads", "batch_size")},
    }
