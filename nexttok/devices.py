"""Where a run computes: its device (the CPU, or a CUDA GPU when there is one) and its precision."""
from __future__ import annotations

import contextlib

import torch

from .config import TaskError


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
