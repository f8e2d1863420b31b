"""Tokens: one per node label 0..N-1, then the four symbols of the authors' format.

A graph becomes `u v | u v | ... | u v / source goal = p1 p2 ... pl` (commas dropped): a prefix of
3E + 3 tokens (27 for G(2,5)) followed by the l target tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .graphs import Graphs


@dataclass(frozen=True)
class Vocab:
    num_nodes: int

    @property
    def pipe(self) -> int:  # "|" between edges
        return self.num_nodes

    @property
    def eq(self) -> int:  # "=" before the answer
        return self.num_nodes + 1

    @property
    def slash(self) -> int:  # "/" before the query
        return self.num_nodes + 2

    @property
    def dummy(self) -> int:  # "$": the input at every target position in teacherless training
        return self.num_nodes + 3

    @property
    def size(self) -> int:
        return self.num_nodes + 4

    def decode(self, tokens) -> str:
        names = {self.pipe: "|", self.eq: "=", self.slash: "/", self.dummy: "$"}
        return " ".join(names.get(t, str(t)) for t in torch.as_tensor(tokens).tolist())


def prefix_len(num_edges: int) -> int:
    return 3 * num_edges + 3


def encode(graphs: Graphs, vocab: Vocab, reverse: bool = False) -> torch.Tensor:
    """(n, prefix_len + l) token ids; with reverse=True the target runs goal -> source."""
    n, E = graphs.edges.shape[:2]
    pipes = torch.full((n, E, 1), vocab.pipe, dtype=graphs.edges.dtype, device=graphs.edges.device)
    edge_tokens = torch.cat([graphs.edges, pipes], dim=2).flatten(1)[:, :-1]  # no "|" after the last edge
    col = lambda v: torch.full((n, 1), v, dtype=edge_tokens.dtype, device=edge_tokens.device)  # noqa: E731
    target = graphs.path.flip(1) if reverse else graphs.path
    return torch.cat(
        [edge_tokens, col(vocab.slash), graphs.source[:, None], graphs.goal[:, None], col(vocab.eq), target], dim=1
    )
