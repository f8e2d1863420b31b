"""What a run will allocate, estimated from its config before anything is allocated, and a refusal in one line
when that is more than the machine (or the GPU) has free.

The estimate counts the large parts only, each from the config's sizes: the graphs (the test set, a fixed train
set, the sampler's scratch, the parsed lines of a data file), the model's weights with their gradients and
AdamW's two moments, the activations of one training step at the batch size (every output head's logits), and
the evaluation's logits (it grades `EVAL_BATCH` graphs at a time). It is a rough upper estimate, not a promise:
its purpose is that a config a machine cannot hold is refused at once, by its sizes, and never ends in the kernel
killing the process minutes later with no message.
"""
from __future__ import annotations

import os

import torch

from .config import RunConfig, TaskError
from .graphs import PathStar, SAMPLE_BYTES

EVAL_BATCH = 1024  # graphs nexttok.evaluate grades at a time
# the share of the free memory a run may plan to use: the estimate is rough, and the rest of the machine runs too
USABLE = 0.9
# a data file's line becomes Python lists of ints while it is parsed: bytes of memory per byte of file, roughly
PARSE_BYTES_PER_BYTE = 40
# the random numbers the sampler may draw for a run's graphs (n graphs x N labels): beyond this a run spends
# minutes drawing its data before its first step, with no output
MAX_DRAWS = 20_000_000_000


def graph_bytes(task: PathStar) -> int:
    """Bytes one graph takes as tensors (int64 edges, source, goal, path and arms)."""
    return 8 * (2 * task.num_edges + 2 + task.path_len + task.deg * task.path_len)


def model_params(cfg: RunConfig) -> int:
    """Parameters of the run's model, roughly (a pretrained model: not counted here; its hub size is its own)."""
    if cfg.model not in ("gpt", "mamba"):
        return 0
    vocab = cfg.num_nodes + 4
    blocks = cfg.layers + max(0, (cfg.mtp_heads or 1) - 1)  # mtp: one more block per extra head
    return 12 * blocks * cfg.dim ** 2 + 2 * vocab * cfg.dim


def estimate(cfg: RunConfig) -> dict[str, int]:
    """Bytes the run of a resolved config allocates, by part (none where the config's shape is not a task: reading
    its data files says what is wrong)."""
    try:
        task = PathStar(cfg.deg, cfg.path_len, cfg.num_nodes)
    except TaskError:
        return {}
    per_graph = graph_bytes(task)
    parts = {}
    if cfg.train_file:
        sizes = [os.stat(f).st_size for f in (cfg.train_file, cfg.test_file) if os.path.isfile(f)]
        parts["data files"] = PARSE_BYTES_PER_BYTE * max(sizes, default=0) + sum(sizes) // 2
    else:
        # a fixed train set is drawn with a tenth more, then de-duplicated by a sort of its keys (three copies)
        drawn = cfg.n_test if not cfg.n_train else 4 * (cfg.n_train + cfg.n_test)
        scratch = min(SAMPLE_BYTES, task.sample_bytes * (cfg.n_train + cfg.n_test))
        parts["graphs"] = per_graph * drawn + scratch
    params = model_params(cfg)
    parts["model and AdamW"] = 16 * params  # fp32 weights, gradients and the two moments
    vocab = cfg.num_nodes + 4
    seq = task.sequence_len
    heads = cfg.mtp_heads or 1
    if cfg.model in ("gpt", "mamba"):
        # per token: the blocks' saved activations (about 12 floats of width a layer), attention, and each head's
        # logits with their gradient; the hybrid objective adds a teacherless copy of part of the batch
        per_token = 4 * (12 * (cfg.layers + heads - 1) * cfg.dim + 2 * heads * vocab)
        attention = 4 * 2 * cfg.layers * cfg.heads * seq * seq if cfg.model == "gpt" else 0
        copies = 2 if cfg.mode == "hybrid" else 1
        parts["activations"] = copies * cfg.batch_size * (seq * per_token + attention)
        # evaluation: logits and their log-softmax for every target position of EVAL_BATCH graphs
        parts["evaluation"] = 3 * 4 * min(cfg.n_test, EVAL_BATCH) * (cfg.path_len + 1) * vocab * heads
    return parts


def available(device: torch.device) -> tuple[int | None, str]:
    """Free bytes where the run's tensors live, and the name of that memory (None: unknown)."""
    if device.type == "cuda":
        try:
            return torch.cuda.mem_get_info(device)[0], f"free on {torch.cuda.get_device_name(device)}"
        except RuntimeError:
            return None, "GPU"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available on this machine"
    except (OSError, ValueError, IndexError):
        pass
    return None, "memory"


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.0f} MiB"


def check_memory(cfg: RunConfig, device: torch.device, world: int = 1) -> dict[str, int]:
    """Refuse, before anything is allocated, a run that draws more random numbers than MAX_DRAWS for its data or
    whose estimate (`estimate`) is more than USABLE of the free memory of `device`. Returns the estimate."""
    if not cfg.train_file:
        draws = (cfg.n_train + cfg.n_test) * cfg.num_nodes
        if draws > MAX_DRAWS:
            raise TaskError(f"drawing {cfg.n_train + cfg.n_test:,} graphs over {cfg.num_nodes:,} labels takes "
                            f"{draws:.2g} random numbers, more than the {MAX_DRAWS:.0e} a run draws for its data (minutes "
                            "before its first step); use fewer graphs or fewer nodes")
    parts = estimate(cfg)
    if world > 1:  # every rank holds the data, the model and its slice of the batch
        parts["activations"] //= world
    total = sum(parts.values())
    free, where = available(device)
    if free is not None and total > USABLE * free:
        largest = ", ".join(f"{k} {gib(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v >= 1 << 20)
        raise TaskError(f"this run needs about {gib(total)} ({largest}), more than the {gib(free)} {where}; use "
                        "fewer nodes, graphs or heads, a smaller batch or model")
    return parts
