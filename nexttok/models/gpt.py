"""A GPT in one file, after nanoGPT: pre-LayerNorm blocks, tied embeddings, scaled_dot_product_attention,
and a key/value cache for generation. Positions are rotary (RoPE, as in Pythia and most models since) or
learned absolute embeddings (as GPT-2 and the paper's authors' GPT): `GPTConfig.positions`.

Rotary positions turn "the token one place back" into the same rotation at every position, so the
previous-token attention behind every look-up of this task is there to be found from the first step; with
learned positions it has to be learned position by position first. On this task that makes the look-ups,
and so both the cheat and the reversed task, arrive in about a third of the steps.

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
    positions: str = "rope"  # rope | learned

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"width {self.n_embd} is not divisible by {self.n_head} heads")
        if self.positions not in ("rope", "learned"):
            raise ValueError(f"positions must be rope or learned (got {self.positions!r})")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rotary positions need an even head width (got {self.n_embd // self.n_head})")


def rotary_table(cfg: GPTConfig) -> torch.Tensor:
    """(2, block_size, head_dim): cos of every position's angles, for each half of a head's dims, and their sin
    with the first half's sign flipped (the rotation's minus sign, folded into the table: see rotate)."""
    hd = cfg.n_embd // cfg.n_head
    inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    angles = torch.outer(torch.arange(cfg.block_size, dtype=torch.float32), inv_freq)
    return torch.stack([torch.cat([angles.cos(), angles.cos()], -1), torch.cat([-angles.sin(), angles.sin()], -1)])


def rotate(t: torch.Tensor, rotary: torch.Tensor | None) -> torch.Tensor:
    """t (B, H, T, hd) rotated to its positions; rotary (2, T, hd) is the table's rows for those positions.
    Each pair (x1, x2) of dims i and i + hd/2 turns by its angle a: (x1 cos a - x2 sin a, x2 cos a + x1 sin a).
    The table holds -sin a for the first half, so the halves are only swapped here: no negation to run
    forward and backward at every step (the products are the same floats: -(x sin a) = x (-sin a))."""
    if rotary is None:
        return t
    swapped = t.roll(t.shape[-1] // 2, dims=-1)  # (x2, x1); its gradient is one roll back, not two zero-filled slices
    return t * rotary[0] + swapped * rotary[1]


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

    def queries_keys_values(self, x, rotary: torch.Tensor | None,
                            n_queries: int | None = None):
        """q of the last n_queries positions (all when None), k and v of every position:
        (B, H, T, hd) each, q and k rotated to their positions."""
        B, T, C = x.shape
        hd = C // self.n_head
        heads = lambda t: t.view(B, -1, self.n_head, hd).transpose(1, 2)  # noqa: E731
        if n_queries is None:
            q, k, v = map(heads, self.qkv(x).split(C, 2))
        else:  # only the last n positions ask: their queries alone
            w, b = self.qkv.weight, self.qkv.bias
            q = heads(F.linear(x[:, -n_queries:], w[:C], b[:C]))
            kv = F.linear(x, w[C:], b[C:])
            k, v = map(heads, kv.split(C, 2))
        q_rotary = None if rotary is None else rotary[:, -q.shape[2]:]
        return rotate(q, q_rotary), rotate(k, rotary), v

    def forward(self, x, rotary=None, cache: KVCache | None = None,
                n_queries: int | None = None, causal: bool = True):
        """rotary: the rotary table's rows for x's positions (None: learned positions).
        n_queries=n: only the last n positions ask (keys and values still come from
        every position); the result is those n rows of the full attention, at a
        fraction of the cost. causal=False lets every position see every other
        (masked diffusion's denoiser)."""
        B, T, C = x.shape
        q, k, v = self.queries_keys_values(x, rotary, n_queries)
        if n_queries is not None:
            # query i sits at position T - n + i and sees keys 0..T - n + i
            mask = None
            if causal:
                mask = torch.ones(n_queries, T, dtype=torch.bool, device=x.device)
                mask = mask.tril(T - n_queries)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.proj(y.transpose(1, 2).reshape(B, n_queries, C))
        if cache is not None:
            if not causal:
                raise ValueError("a key/value cache is for causal decoding")
            # filling the cache: causal; then one new token sees every key
            causal = cache.pos == 0
            if not causal and T != 1:
                raise ValueError("a filled cache takes one token at a time")
            k, v = cache.update(self.layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
        )

    def forward(self, x, rotary=None, cache=None, n_queries: int | None = None,
                causal: bool = True):
        """n_queries=n: compute the block's output at the last n positions only."""
        residual = x if n_queries is None else x[:, -n_queries:]
        x = residual + self.attn(self.ln_1(x), rotary, cache, n_queries, causal)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.positions == "learned":
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        else:
            self.register_buffer("rotary", rotary_table(cfg), persistent=False)
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

    def embed(self, idx, cache: KVCache | None = None):
        """(token embeddings, plus learned position embeddings; the rotary table's rows for these positions
        or None)."""
        start = cache.pos if cache is not None else 0
        T = idx.shape[1]
        if start + T > self.cfg.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size={self.cfg.block_size}")
        if self.cfg.positions == "learned":
            return self.wte(idx) + self.wpe(torch.arange(start, start + T, device=idx.device)), None
        return self.wte(idx), self.rotary[:, start : start + T]

    def features(self, idx, n_out: int | None = None, cache: KVCache | None = None, causal: bool = True):
        """The final normalised hidden states (B, n_out, C) of the last n_out positions (all when None)."""
        x, rotary = self.embed(idx, cache)
        # training and scoring read only the last n_out outputs: the last block then computes just those
        # positions (its keys and values still cover every position), which skips most of its arithmetic
        trim = n_out if cache is None else None
        for i, block in enumerate(self.blocks):
            x = block(x, rotary, cache, trim if i == len(self.blocks) - 1 else None, causal)
        if cache is not None:
            cache.pos += idx.shape[1]
        if n_out is not None:
            x = x[:, -n_out:]
        return self.ln_f(x)

    def unembed(self, h):
        return F.linear(h, self.wte.weight)  # tied: the head is the embedding

    def forward(self, idx, n_out: int | None = None, cache: KVCache | None = None, causal: bool = True):
        """Logits (B, n_out, V) for the last n_out positions (all positions when n_out is None)."""
        return self.unembed(self.features(idx, n_out, cache, causal))

    @torch.no_grad()
    def generate(self, prefix, n_new: int, temperature: float = 0.0, generator: torch.Generator | None = None):
        """n_new tokens after prefix (B, T): greedy when temperature == 0, else sampled."""
        return decode_with_cache(self, lambda x, cache: self(x, n_out=1, cache=cache)[:, -1], prefix, n_new,
                                 temperature, generator)


def decode_with_cache(gpt: GPT, next_logits, prefix, n_new: int, temperature: float = 0.0, generator=None):
    """Decode n_new tokens after prefix through `gpt`'s key/value cache: `next_logits(tokens, cache)` reads
    new tokens into the cache and returns the logits (B, V) of the token that follows them. The prefix fills
    the cache once, then every step feeds one token."""
    param = gpt.wte.weight
    dtype = torch.get_autocast_dtype(prefix.device.type) if torch.is_autocast_enabled(prefix.device.type) else param.dtype
    cache = KVCache(gpt.cfg, prefix.shape[0], prefix.shape[1] + n_new, prefix.device, dtype)
    logits = next_logits(prefix, cache)
    out = []
    for i in range(n_new):
        out.append(pick(logits, temperature, generator))
        if i + 1 < n_new:
            logits = next_logits(out[-1][:, None], cache)
    return torch.stack(out, dim=1)


def pick(logits, temperature: float = 0.0, generator=None):
    if temperature == 0.0:
        return logits.argmax(-1)
    probs = (logits.float() / temperature).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
