"""A Mamba language model: embedding, residual Mamba blocks (pre-RMSNorm), a final RMSNorm and a head
tied to the embedding. Module names follow mamba_ssm's MambaLMHeadModel (backbone.embedding,
backbone.layers.i.norm / .mixer, backbone.norm_f), so checkpoints move between the two.

The mixer is mamba_ssm's fused CUDA block when it can run (CUDA present and mamba_ssm importable), and
otherwise the pure-PyTorch block of the `mambapy` package, whose parameters carry the same names and
shapes (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj): a model trained on a GPU loads on a
laptop and the other way round. On the CPU we replace its selective scan (below).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from mambapy.mamba import MambaBlock, MambaConfig

from .gpt import pick


@dataclass
class MambaLMConfig:
    vocab_size: int
    block_size: int  # longest sequence (for the same length checks as the GPT)
    n_layer: int = 2
    d_model: int = 96
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2


def cuda_mamba_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import mamba_ssm  # noqa: F401
    except Exception:  # ImportError, or a build that does not match this torch
        return False
    return True


def selective_scan(x, delta, A, B, C, D):
    """The selective scan h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t,  y_t = C_t h_t + D x_t.

    x, delta: (batch, L, ED); A: (ED, N); B, C: (batch, L, N); D: (ED,). Returns y: (batch, L, ED).
    One time step at a time, so the working set is one (batch, ED, N) state, which stays in the CPU's
    cache. mambapy's parallel scan first builds (batch, L, ED, N) tensors; for this task's short
    sequences on a CPU that memory traffic makes it about 40x slower.
    """
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        d = delta[:, t, :, None]
        h = torch.exp(d * A) * h + (d * x[:, t, :, None]) * B[:, t, None, :]
        ys.append(torch.einsum("ben,bn->be", h, C[:, t]))
    return torch.stack(ys, dim=1) + D * x


def make_mixer(cfg: MambaLMConfig, use_cuda_kernels: bool) -> nn.Module:
    if use_cuda_kernels:
        from mamba_ssm import Mamba

        return Mamba(d_model=cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand)
    block = MambaBlock(MambaConfig(d_model=cfg.d_model, n_layers=cfg.n_layer, d_state=cfg.d_state,
                                   d_conv=cfg.d_conv, expand_factor=cfg.expand))
    block.selective_scan = selective_scan  # same arguments and result as the block's own parallel scan
    return block


class Block(nn.Module):
    def __init__(self, cfg: MambaLMConfig, use_cuda_kernels: bool):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.mixer = make_mixer(cfg, use_cuda_kernels)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: MambaLMConfig, use_cuda_kernels: bool):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, use_cuda_kernels) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=1e-5)


class MambaLM(nn.Module):
    def __init__(self, cfg: MambaLMConfig, use_cuda_kernels: bool | None = None):
        super().__init__()
        self.cfg = cfg
        self.use_cuda_kernels = cuda_mamba_available() if use_cuda_kernels is None else use_cuda_kernels
        self.backbone = Backbone(cfg, self.use_cuda_kernels)
        nn.init.normal_(self.backbone.embedding.weight, std=0.02)

    def forward(self, idx, n_out: int | None = None, cache=None, need_weights=False):
        """Logits (B, n_out, V) for the last n_out positions (all when n_out is None)."""
        if cache is not None or need_weights:
            raise ValueError("the Mamba model has no key/value cache and no attention weights")
        if idx.shape[1] > self.cfg.block_size:
            raise ValueError(f"sequence of {idx.shape[1]} tokens is longer than block_size={self.cfg.block_size}")
        x = self.backbone.embedding(idx)
        for layer in self.backbone.layers:
            x = layer(x)
        if n_out is not None:
            x = x[:, -n_out:]
        return F.linear(self.backbone.norm_f(x), self.backbone.embedding.weight)

    def step(self, token, states: list):
        """Logits (B, V) for the next token after `token` (B,), carrying each layer's recurrent state in
        `states` (one entry per layer, None at the start; updated in place). The pure-PyTorch block only:
        mambapy's MambaBlock.step keeps the scan state h and the last d_conv - 1 conv inputs."""
        x = self.backbone.embedding(token)
        for i, layer in enumerate(self.backbone.layers):
            if states[i] is None:
                mixer = layer.mixer
                states[i] = (None, x.new_zeros(x.shape[0], mixer.config.d_inner, mixer.config.d_conv - 1))
            y, states[i] = layer.mixer.step(layer.norm(x), states[i])
            x = x + y
        return F.linear(self.backbone.norm_f(x), self.backbone.embedding.weight)

    @torch.no_grad()
    def generate(self, prefix, n_new: int, temperature: float = 0.0, generator: torch.Generator | None = None):
        """n_new tokens after prefix. The pure-PyTorch block reads the prefix once, a token at a time through
        its recurrent state, and then costs one step per new token. The fused CUDA block re-reads the whole
        sequence for each token (the task's answers are a few tokens long, so about n_new forward passes)."""
        if self.use_cuda_kernels:
            seq = prefix
            for _ in range(n_new):
                nxt = pick(self(seq, n_out=1)[:, -1], temperature, generator)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
            return seq[:, prefix.shape[1]:]
        if prefix.shape[1] + n_new - 1 > self.cfg.block_size:
            raise ValueError(f"sequence of {prefix.shape[1] + n_new - 1} tokens is longer than block_size={self.cfg.block_size}")
        states = [None] * len(self.backbone.layers)
        for t in range(prefix.shape[1]):
            logits = self.step(prefix[:, t], states)
        out = []
        for _ in range(n_new):
            out.append(pick(logits, temperature, generator))
            if len(out) < n_new:
                logits = self.step(out[-1], states)
        return torch.stack(out, dim=1)
