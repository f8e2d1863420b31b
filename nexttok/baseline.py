"""A training loop written like the authors' (gregorbachmann/Next-Token-Failures), for `nexttok bench
--baseline` to measure this package against in the same process. Nothing else uses it.

What makes it theirs, as their code does it (not their code):
- graphs come from a per-graph Python sampler that draws one label at a time with numpy and redraws a
  label already taken, then are written in the text format and tokenized, and served by a Dataset one
  sample at a time through a DataLoader;
- the GPT computes separate q, k, v projections, attention with einsum and a masked (T, T) buffer, a
  tanh-approximated GELU, and the LM head at every position; the loss ignores the prefix with -1 targets;
- each step computes the accuracy and reads the loss back with .item();
- generation re-runs the whole sequence for every new token (no key/value cache).
"""
from __future__ import annotations

import math
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .graphs import PathStar


def star_graph(task: PathStar, rng: np.random.RandomState) -> tuple[list, list, int, int]:
    """(path, edges, source, goal), one label at a time with rejection, as the authors' generator."""
    N, L = task.num_nodes, task.path_len
    draw = lambda: rng.randint(0, N, 1)[0]  # noqa: E731  (an array of one, then its element, as theirs)
    source, goal = draw(), draw()
    while goal == source:
        goal = draw()
    path = [source]
    for _ in range(L - 2):
        node = draw()
        while node in path or node == goal:
            node = draw()
        path.append(node)
    path.append(goal)
    edges = [[path[i], path[i + 1]] for i in range(L - 1)]
    taken = set()
    for _ in range(task.deg - 1):
        node, length = source, 1
        while length < L:
            nxt = draw()
            if nxt not in taken and nxt not in path:
                edges.append([node, nxt])
                taken.add(nxt)
                node, length = nxt, length + 1
    random.shuffle(edges)
    return path, edges, source, goal


def graphs_per_second(task: PathStar, n: int = 2000) -> float:
    rng = np.random.RandomState(0)
    start = time.perf_counter()
    for _ in range(n):
        star_graph(task, rng)
    return n / (time.perf_counter() - start)


def tokenize(task: PathStar, n: int, rng: np.random.RandomState) -> torch.Tensor:
    """n graphs as text lines, read back token by token by a numeral tokenizer: (n, prefix + l)."""
    symbols = {"|": task.num_nodes, "=": task.num_nodes + 1, "/": task.num_nodes + 2}
    rows = []
    for _ in range(n):
        path, edges, s, g = star_graph(task, rng)
        line = "|".join(f"{u},{v}" for u, v in edges) + f"/{s},{g}=" + ",".join(map(str, path))
        tokens, number = [], ""
        for ch in line + ",":
            if ch.isdigit():
                number += ch
                continue
            if number:
                tokens.append(int(number))
                number = ""
            if ch in symbols:
                tokens.append(symbols[ch])
        rows.append(tokens)
    return torch.tensor(rows)


class Graphs(Dataset):
    def __init__(self, tokens: torch.Tensor, num_prefix: int):
        self.tokens, self.num_prefix = tokens, num_prefix

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, idx):
        x = self.tokens[idx][:-1].clone()
        y = self.tokens[idx][1:].clone()
        y[: self.num_prefix - 1] = -1  # no loss on the prefix
        return x, y


class Attention(nn.Module):
    def __init__(self, C: int, H: int, T: int):
        super().__init__()
        self.H = H
        self.q, self.k, self.v, self.proj = (nn.Linear(C, C) for _ in range(4))
        self.register_buffer("mask", torch.tril(torch.ones(T, T)).view(1, T, T, 1), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (m(x).view(B, T, self.H, C // self.H) for m in (self.q, self.k, self.v))
        att = torch.einsum("bmhd,bnhd->bmnh", q, k).masked_fill(self.mask[:, :T, :T] == 0, float("-inf"))
        att = F.softmax(att / math.sqrt(C // self.H), dim=2)
        return self.proj(torch.einsum("bmnh,bnhd->bmhd", att, v).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, C: int, H: int, T: int):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(C, H, T), nn.LayerNorm(C)
        self.expand, self.out = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.out(F.gelu(self.expand(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V: int, T: int, L: int, C: int, H: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block(C, H, T) for _ in range(L))
        self.ln_f, self.head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
        self.wte.weight = self.head.weight

    def forward(self, idx, targets=None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None, None
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-1)
        graded = targets != -1
        acc = (logits.argmax(-1)[graded] == targets[graded]).float().mean()
        return logits, loss, acc

    @torch.no_grad()
    def generate(self, idx, n_new: int):
        for _ in range(n_new):
            logits, _, _ = self(idx)
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx[:, -n_new:]


def measure(task: PathStar, layers: int, dim: int, heads: int, batch_size: int, steps: int, lr: float = 1e-3) -> dict:
    """Training samples/s and generation sequences/s of the authors'-style loop on the CPU."""
    random.seed(0)
    rng = np.random.RandomState(0)
    tokens = tokenize(task, batch_size * (steps + 1), rng)
    num_prefix = tokens.shape[1] - task.path_len
    loader = DataLoader(Graphs(tokens, num_prefix), batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = GPT(task.num_nodes + 4, tokens.shape[1] - 1, layers, dim, heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    batches = iter(loader)

    def step():
        x, y = next(batches)
        _, loss, acc = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item(), acc.item()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    train_s = (time.perf_counter() - start) / steps
    prefixes = tokens[:1024, :num_prefix]
    start = time.perf_counter()
    model.generate(prefixes, task.path_len)
    gen_s = time.perf_counter() - start
    return {"train_samples_per_s": batch_size / train_s, "train_step_ms": 1000 * train_s,
            "gen_seqs_per_s": len(prefixes) / gen_s}
