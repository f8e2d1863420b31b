"""`nexttok bench`: how fast this machine trains, generates and samples, and how close training
comes to the machine's own dense matmul speed, measured in the same process. `--baseline` also times a
loop written like the authors' (nexttok.baseline) in the same process and reports the ratios."""
from __future__ import annotations

import functools
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from . import baseline
from .config import RunConfig
from .evaluate import LEARNED
from .graphs import TaskError, sample, seeded_generator
from .records import device_name
from .devices import autocast
from .train import Run, TrainingLoss


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


def train_flops_per_sample(run: Run, batch: int = 4) -> float:
    """FLOPs of one training sample of the run's objective, forward and backward, counted by PyTorch's FLOP
    counter on a real step. Attention runs on PyTorch's plain (math) kernel while counting, so its scores
    and values are counted as the matmuls they are (the full square, as PaLM's MFU does; the fused CPU kernel
    is invisible to the counter). Elementwise work (norms, activations, Mamba's scan) is not counted."""
    graphs = run.train_data.batch(0)[:batch]
    loss_module = TrainingLoss(run.model, run.objective, run.vocab)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss_module(graphs, seeded_generator(0, "flops", device=run.device)).backward()
    run.model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(graphs)


@functools.cache
def _gpt_flops_per_sample(cfg: RunConfig) -> float:
    with torch.random.fork_rng():  # building a Run seeds torch; the caller's stream stays as it was
        return train_flops_per_sample(Run(cfg))


def objective_cost(cfg: RunConfig) -> float:
    """Training FLOPs per sample of cfg's objective over next-token training's, both counted on the book's GPT at
    cfg's task, depth and width: what BST's second encoder and pair head, the hybrid's teacherless copies or the
    extra heads add. A pretrained model or Mamba is priced as the GPT of its config's shape (2 x 96 where unset);
    one attention head, since the count of heads does not change the FLOPs. Each count is made once a process, so
    the next-token baseline serves every objective of a shape."""
    task = {k: getattr(cfg, k) for k in ("deg", "path_len", "num_nodes")}
    shape = dict(layers=cfg.layers or 2, dim=cfg.dim or 96, heads=1, n_train=0,
                 n_test=16, n_eval=16, device="cpu", precision="fp32")
    own = {k: getattr(cfg, k) for k in ("mtp_heads", "input_dropout", "hybrid_fraction", "diffusion_weight",
                                        "diffusion_schedule")}
    costs = [_gpt_flops_per_sample(RunConfig(**task, **shape, **settings))
             for settings in ({"mode": cfg.mode, **own}, {"mode": "forward"})]
    return costs[0] / costs[1]


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


def time_to_result(cfg: RunConfig, target: float = LEARNED, check_every: int = 50, progress: bool = False) -> dict:
    """Train cfg's run (its own schedule, so the run the book would do) and stop at the first check where
    generation accuracy on the held-out graphs reaches `target`. seconds_to_result counts training
    steps only; the checks, which a real run does far less often, are reported apart."""
    run = Run(cfg)
    cfg = run.cfg
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


def bench(cfg: RunConfig, train_steps: int = 10, gen_graphs: int = 2048, baseline_loop: bool = False) -> dict:
    run = Run(cfg)
    cfg, device, task = run.cfg, run.device, run.task
    step_s = _timed(run.train_step, device, train_steps)
    flops_per_sample = train_flops_per_sample(run)
    flops = flops_per_sample * cfg.batch_size / step_s
    peak = matmul_flops_per_s(device, run.precision)
    datasheet = gpu_peak(device)

    graphs = run.test[:gen_graphs]
    with autocast(run.precision, device):  # the objective's own decoding (greedy with a KV cache for GPTs)
        gen_s = _timed(lambda: run.objective.decode(run.model, graphs, run.vocab), device, 3)

    n_graphs = 100_000
    graphs_s = _timed(lambda: sample(task, n_graphs, seeded_generator(0, "bench", device=device)), device, 3)
    authors_graphs_per_s = baseline.graphs_per_second(task)
    result = {
        "train_samples_per_s": cfg.batch_size / step_s,
        "train_step_ms": 1000 * step_s,
        "train_flops_per_sample": flops_per_sample,
        "train_flops_per_s": flops,
        "matmul_flops_per_s": peak,
        "train_vs_matmul": flops / peak,
        # model FLOP utilisation against the data sheet's dense bf16 peak (GPUs in GPU_BF16_PEAK only)
        "mfu_vs_bf16_peak": flops / datasheet if datasheet else None,
        "gen_seqs_per_s": len(graphs) / gen_s,
        "graphs_per_s": n_graphs / graphs_s,
        "authors_style_graphs_per_s": authors_graphs_per_s,
        "graphs_vs_authors_style": n_graphs / graphs_s / authors_graphs_per_s,
        "precision": run.precision,
        "device": device_name(device),
        "torch": torch.__version__,
        "config": {k: getattr(cfg, k) for k in ("deg", "path_len", "num_nodes", "mode", "model", "layers", "dim", "heads",
                                                  "batch_size")},
    }
    if baseline_loop:
        if device.type != "cpu" or cfg.model != "gpt":
            raise TaskError("--baseline times the authors'-style GPT loop on the CPU: use --device cpu --model gpt")
        theirs = baseline.measure(task, cfg.layers, cfg.dim, cfg.heads, cfg.batch_size, steps=train_steps)
        result.update({
            "authors_style_train_samples_per_s": theirs["train_samples_per_s"],
            "train_vs_authors_style": result["train_samples_per_s"] / theirs["train_samples_per_s"],
            # the most this comparison can show on this machine: the ratio a step that ran all of this model's
            # FLOPs at the measured dense matmul speed would reach (small matrices run below it)
            "train_vs_authors_style_ceiling": peak / (flops_per_sample * theirs["train_samples_per_s"]),
            "authors_style_gen_seqs_per_s": theirs["gen_seqs_per_s"],
            "gen_vs_authors_style": result["gen_seqs_per_s"] / theirs["gen_seqs_per_s"],
        })
    return result
