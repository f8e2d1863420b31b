"""A GPT in one file, after nanoGPT: learned positions, pre-LayerNorm blocks, tied embeddings,
scaled_dot_product_attention, and a key/value cache for generation.

Two things serve this task in particular:
- `forward(idx, n_out=k)` runs the final LayerNorm and the LM head on the last k positions only. The
  loss only covers the l target positions, so the head never touches the prefix.
- `generate` fills the cache with the prefix once, then feeds one token per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int  # longest sequence the model reads
    n_layer: int = 2
    n_head: int = 6
    n_embd: int = 96

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"width {self.n_embd} is not divisible by {self.n_head} heads")


class KVCache:
    """Keys and values of every layer for positions 0..pos-1, preallocated to max_len."""

    def __init__(self, cfg: GPTConfig, batch: int, max_len: int, device, dtype):
        shape = (cfg.n_layer, 2, batch, cfg.n_head, max_len, cfg.n_embd // cfg.n_head)
        self.kv = torch.empty(shape, device=device, dtype=dtype)
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H, T, hd) at positions pos..pos+T-1; return all keys and values so far."""
        end = self.pos + k.shape[2]
        self.kv[layer, 0, :, :, self.pos : end] = k
        self.kv[layer, 1, :, :, self.pos : end] = v
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.layer = cfg.n_head, layer
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x, cache: KVCache | None = None, need_weights: bool = False, n_queries: int | None = None):
        """n_queries=n: only the last n positions ask (keys and values still come from every position);
        the result is those n rows of the full attention, at a fraction of the cost."""
        B, T, C = x.shape
        if n_queries is not None:
            heads = lambda t: t.view(B, -1, self.n_head, C // self.n_head).transpose(1, 2)  # noqa: E731
            q = heads(F.linear(x[:, -n_queries:], self.qkv.weight[:C], self.qkv.bias[:C]))
            k, v = map(heads, F.linear(x, self.qkv.weight[C:], self.qkv.bias[C:]).split(C, 2))
            # query i sits at position T - n + i and sees keys 0..T - n + i (a bottom-right causal mask)
            mask = torch.ones(n_queries, T, dtype=torch.bool, device=x.device).tril(T - n_queries)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.proj(y.transpose(1, 2).reshape(B, n_queries, C))
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, 2))
        causal = True
        if cache is not None:
            causal = cache.pos == 0  # filling the cache: causal; one new token: it sees every key
            if not causal and T != 1:
                raise ValueError("a filled cache takes one token at a time")
            k, v = cache.update(self.layer, k, v)
        if need_weights:  # the explicit form, to inspect attention; same result as the fused kernel
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
            if causal:
                att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            self.weights = att.softmax(-1)
            y = self.weights @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        )

    def forward(self, x, cache=None, need_weights=False, n_queries: int | None = None):
        """n_queries=n: compute the block's output at the last n positions only."""
        residual = x if n_queries is None else x[:, -n_queries:]
        x = residual + self.attn(self.ln_1(x), cache, need_weights, n_queries)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2's scaled init of the projections that write to the residual
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)

    def forward(self, idx, n_out: int | None = None, cache: KVCache | None = None, need_weights=False):
        """Logits (B, n_out, V) for the last n_out positions (all positions when n_out is None)."""
        start = cache.pos if cache is not None else 0
        T = idx.shape[1]
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size={self.cfg.block_size}")
        x = self.wte(idx) + self.wpe(torch.arange(start, start + T, device=idx.device))
        # training and scoring read only the last n_out outputs: the last block then computes just those
        # positions (its keys and values still cover every position), which skips most of its arithmetic
        trim = n_out is not None and cache is None and not need_weights
        for i, block in enumerate(self.blocks):
            x = block(x, cache, need_weights, n_out if trim and i == len(self.blocks) - 1 else None)
        if cache is not None:
            cache.pos += T
        if n_out is not None:
            x = x[:, -n_out:]
        return F.linear(self.ln_f(x), self.wte.weight)  # tied: the head is the embedding

    @torch.no_grad()
    def generate(self, prefix, n_new: int, temperature: float = 0.0, generator: torch.Generator | None = None):
        """n_new tokens after prefix (B, T): greedy when temperature == 0, else sampled."""
        param = self.wte.weight
        dtype = torch.get_autocast_dtype(prefix.device.type) if torch.is_autocast_enabled(prefix.device.type) else param.dtype
        cache = KVCache(self.cfg, prefix.shape[0], prefix.shape[1] + n_new, prefix.device, dtype)
        logits = self(prefix, n_out=1, cache=cache)
        out = []
        for i in range(n_new):
            out.append(pick(logits[:, -1], temperature, generator))
            if i + 1 < n_new:
                logits = self(out[-1][:, None], n_out=1, cache=cache)
        return torch.stack(out, dim=1)


def pick(logits, temperature: float = 0.0, generator=None):
    if temperature == 0.0:
        return logits.argmax(-1)
    probs = (logits.float() / temperature).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
