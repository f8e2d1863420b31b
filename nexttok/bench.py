"""`nexttok bench`: how fast this machine trains, generates and samples, and how close training
comes to the machine's own dense matmul speed, measured in the same process."""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

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


def train_flops_per_sample(model, cfg: RunConfig, task: PathStar) -> float:
    """Matmul FLOPs of one training sample (forward + backward = 3x forward), counted from the shapes.

    GPT: per layer and token 24*C^2 (qkv, projection, 4x MLP) and 4*T*C per query for attention scores
    and values (the full square, as PaLM's MFU does); the last block computes only the l graded
    positions (keys and values for all T), and so does the tied head. Other models (Mamba, pretrained):
    2 FLOPs per weight of every matrix per token, all T tokens, plus the head on the l graded positions
    (Mamba's selective scan is elementwise work and not counted)."""
    C, T, L, l = cfg.dim, prefix_len(task.num_edges) + task.path_len - 1, cfg.layers, task.path_len
    V = task.num_nodes + 4
    if cfg.model == "gpt":
        full = 24 * C * C * T + 4 * T * T * C
        last = 4 * C * C * T + 20 * C * C * l + 4 * l * T * C
        forward = (L - 1) * full + last + 2 * C * V * l
    else:
        embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2 and id(p) not in embeddings)
        forward = 2 * matrices * T + 2 * C * V * l
    return 3.0 * forward


# Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity), for model FLOP utilisation.
GPU_BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def gpu_peak(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_BF16_PEAK.items() if key in name), None)


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


def time_to_result(cfg: RunConfig, target: float = 0.95, check_every: int = 50, progress: bool = False) -> dict:
    """Train cfg's run (its own schedule, so the run the book would do) and stop at the first check where
    generation accuracy on the held-out graphs reaches `target`. seconds_to_result counts training
    steps only; the checks, which a real run does far less often, are reported apart."""
    run = Run(cfg)
    train_s = check_s = 0.0
    bar = tqdm(total=cfg.steps, disable=not progress, desc=f"to {target} {cfg.mode}")
    accuracy = None
    while run.step < cfg.steps:
        start = time.perf_counter()
        run.train_step()
        _sync(run.device)
        train_s += time.perf_counter() - start
        bar.update(1)
        if run.step % check_every == 0 or run.step == cfg.steps:
            start = time.perf_counter()
            accuracy = run.evaluate()["gen_accuracy"]
            check_s += time.perf_counter() - start
            bar.set_postfix(gen_acc=f"{accuracy:.3f}")
            if accuracy >= target:
                break
    bar.close()
    reached = accuracy is not None and accuracy >= target
    return {
        "reached": reached,
        "target": target,
        "steps_to_result": run.step if reached else None,
        "seconds_to_result": round(train_s, 2) if reached else None,
        "gen_accuracy": accuracy,
        "steps_trained": run.step,
        "train_seconds": round(train_s, 2),
        "check_seconds": round(check_s, 2),
        "check_every": check_every,
        "device": device_name(run.device),
        "torch": torch.__version__,
        "config": cfg.to_dict(),
    }


def bench(cfg: RunConfig, train_steps: int = 10, gen_graphs: int = 2048) -> dict:
    run = Run(cfg)
    device, task = run.device, run.task
    step_s = _timed(run.train_step, device, train_steps)
    flops = train_flops_per_sample(run.model, cfg, task) * cfg.batch_size / step_s
    peak = matmul_flops_per_s(device, run.precision)
    datasheet = gpu_peak(device)

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
        # model FLOP utilisation against the data sheet's dense bf16 peak (GPUs in GPU_BF16_PEAK only)
        "mfu_vs_bf16_peak": flops / datasheet if datasheet else None,
        "gen_seqs_per_s": len(prefixes) / gen_s,
        "graphs_per_s": n_graphs / graphs_s,
        "python_loop_graphs_per_s": n_loop / loop_s,
        "precision": run.precision,
        "device": device_name(device),
        "torch": torch.__version__,
        "config": {k: getattr(cfg, k) for k in ("deg", "path_len", "num_nodes", "mode", "model", "layers", "dim", "heads", "batch_size")},
    }
