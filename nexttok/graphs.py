"""The path-star task G(d, l, N): sampling, the authors' text format, and validation.

A graph has a source with `deg` arms; each arm is a path of `path_len` nodes counted from the source, so
it adds `path_len - 1` new nodes. All `1 + deg * (path_len - 1)` labels are distinct and drawn from
`0..num_nodes-1`. The goal is the leaf of one arm; the answer is that arm, source first.

Sampling is vectorised: one partial sort (`topk`) of uniform noise gives every graph of a batch a random
injective labelling at once, so there is no Python loop per graph or per node.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TaskError


def one_line(text: str, limit: int = 300) -> str:
    """Another library's error message for a one-line error: whitespace and line breaks collapsed, terminal
    colour codes dropped, cut at `limit` characters."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# The sampler draws a row of num_nodes random numbers per graph; above a million labels a graph costs
# megabytes before it is even written, and no model here has a vocabulary that large.
MAX_NODES = 1_000_000
# Scratch memory one call of the sampler may use; a larger request is drawn in chunks of rows. Chunking
# changes which random numbers a graph gets, so the budget sits far above every size the book samples
# (the paper's 242,016 graphs over 50 labels take 0.3 GiB): their graphs are those of one draw.
SAMPLE_BYTES = 1 << 30
# The longest line of the text format a model here can read: 4096 tokens (config.MAX_SEQUENCE), each a label of at
# most 7 characters with its separator. A longer line is refused before it is parsed (parsing a line of 100 MB
# takes gigabytes).
MAX_LINE = 4096 * 8


@dataclass(frozen=True)
class PathStar:
    """The task's shape: G(deg, path_len) over labels 0..num_nodes-1."""

    deg: int
    path_len: int
    num_nodes: int

    def __post_init__(self):
        problems = []
        if self.deg < 1:
            problems.append(f"degree must be at least 1 (got {self.deg})")
        if self.path_len < 2:
            problems.append(f"path length must be at least 2 (got {self.path_len})")
        if self.num_nodes > MAX_NODES:
            problems.append(f"num_nodes={self.num_nodes:,} is more node labels than the {MAX_NODES:,} this package samples")
        if not problems and self.num_nodes < self.graph_nodes:
            problems.append(
                f"num_nodes={self.num_nodes} is too small: G({self.deg},{self.path_len}) needs "
                f"1 + deg*(path_len-1) = {self.graph_nodes} distinct node labels"
            )
        if problems:
            raise TaskError("; ".join(problems))

    @property
    def graph_nodes(self) -> int:
        return 1 + self.deg * (self.path_len - 1)

    @property
    def num_edges(self) -> int:
        return self.deg * (self.path_len - 1)

    @property
    def sequence_len(self) -> int:
        """Tokens of a whole sequence: the prefix (3 per edge, then "/ source goal =") and the l path nodes."""
        return 3 * self.num_edges + 3 + self.path_len

    @property
    def distinct_graphs(self) -> int:
        """How many different graphs G(d, l, N) holds (edge order aside): a source, an unordered set of d arms
        of l-1 distinct labels each, and which arm ends at the goal: N! / (N - m)! / (d - 1)!, m = 1 + d(l-1)."""
        return math.perm(self.num_nodes, self.graph_nodes) // math.factorial(self.deg - 1)

    def has_distinct_graphs(self, n: int) -> bool:
        """Whether the task holds at least n distinct graphs; cheap for any size (distinct_graphs itself is a
        number with millions of digits for a large task)."""
        log_count = math.lgamma(self.num_nodes + 1) - math.lgamma(self.num_nodes - self.graph_nodes + 1) - math.lgamma(self.deg)
        if log_count > math.log(max(n, 1)) + 1:  # a margin far above lgamma's rounding error
            return True
        return self.distinct_graphs >= n  # small: exact

    @property
    def sample_bytes(self) -> int:
        """Bytes the sampler uses per graph, roughly: a float and an index per label, the arms and the shuffled
        edges with their sort keys."""
        return 16 * self.num_nodes + 64 * self.num_edges + 16 * self.graph_nodes + 64

    @property
    def rows_per_chunk(self) -> int:
        """Graphs the sampler draws at once within SAMPLE_BYTES (at least one)."""
        return max(1, SAMPLE_BYTES // self.sample_bytes)


@dataclass
class Graphs:
    """A batch of path-star graphs as tensors (n graphs, E = deg*(path_len-1) edges).

    edges:  (n, E, 2) parent -> child, in the (shuffled) order they are written in the prefix
    source: (n,)      goal: (n,)
    path:   (n, l)    the answer, source first
    arms:   (n, d, l) every arm, source first (arms[i, k, 0] == source[i])
    """

    edges: torch.Tensor
    source: torch.Tensor
    goal: torch.Tensor
    path: torch.Tensor
    arms: torch.Tensor

    def __len__(self) -> int:
        return self.source.shape[0]

    def __getitem__(self, index) -> "Graphs":
        return Graphs(*(t[index] for t in self._tensors()))

    def _tensors(self):
        return self.edges, self.source, self.goal, self.path, self.arms

    def to(self, device) -> "Graphs":
        return Graphs(*(t.to(device) for t in self._tensors()))

    @property
    def task(self) -> tuple[int, int]:
        """(deg, path_len) of this batch."""
        return self.arms.shape[1], self.arms.shape[2]

    def keys(self) -> torch.Tensor:
        """One row per graph that identifies it up to edge order: the goal path, then the other arms
        sorted by their first node. Equal rows <=> same edge set, source and goal."""
        first = self.arms[:, :, 1]
        order = first.argsort(dim=1)
        arms = self.arms.gather(1, order[:, :, None].expand_as(self.arms))
        return torch.cat([self.path, arms[:, :, 1:].flatten(1)], dim=1)


def cat(batches: list[Graphs]) -> Graphs:
    return Graphs(*(torch.cat(ts) for ts in zip(*(b._tensors() for b in batches))))


def seeded_generator(seed: int, *stream, device="cpu") -> torch.Generator:
    """A generator for one named stream of randomness, e.g. ("train", step) or ("test",).

    Deriving every stream from (seed, name, index) makes each batch a pure function of the seed and the
    step, so a resumed run sees exactly the data an uninterrupted run would, with no RNG state to save.
    """
    digest = hashlib.blake2b(repr((seed,) + stream).encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") >> 1)


def sample(task: PathStar, n: int, generator: torch.Generator) -> Graphs:
    """n independent uniform graphs of G(d, l, N), on the generator's device. A request larger than the
    sampler's memory budget (SAMPLE_BYTES) is drawn in chunks, one after the other from the generator."""
    rows = task.rows_per_chunk
    if n > rows:
        return cat([_sample(task, min(rows, n - start), generator) for start in range(0, n, rows)])
    return _sample(task, n, generator)


def _sample(task: PathStar, n: int, generator: torch.Generator) -> Graphs:
    """The labels are the indices of the 1 + d(l-1) largest of N uniform numbers: a uniformly random ordered
    subset, found by a partial sort (topk) rather than a sort of all N. The goal's arm is the first: the arms'
    labels are exchangeable and the edges are shuffled, so nothing the model sees depends on which arm that
    is, and no draw is spent on it."""
    d, l, N = task.deg, task.path_len, task.num_nodes
    device = generator.device
    labels = torch.rand(n, N, generator=generator, device=device).topk(task.graph_nodes, dim=1).indices
    # labels[:, 0] is the source, labels[:, 1 + k(l-1) : 1 + (k+1)(l-1)] the rest of arm k
    arms = torch.cat([labels[:, :1, None].expand(n, d, 1), labels[:, 1:].view(n, d, l - 1)], dim=2)
    # edge e of arm k = e // (l-1), step j = e % (l-1), joins arms[:, k, j] and arms[:, k, j + 1]; written in a
    # random order per graph
    order = torch.rand(n, task.num_edges, generator=generator, device=device).argsort(dim=1)
    child = 1 + order
    parent = torch.where(order % (l - 1) == 0, 0, order)
    edges = torch.stack([labels.gather(1, parent), labels.gather(1, child)], dim=-1)
    path = arms[:, 0]
    return Graphs(edges, labels[:, 0], path[:, -1], path, arms)


def sample_distinct(task: PathStar, sizes: list[int], generator: torch.Generator) -> list[Graphs]:
    """Disjoint sets of distinct graphs with the given sizes (e.g. [n_train, n_test]): no graph is in
    two sets or twice in one. Raises TaskError when the task has too few distinct graphs."""
    need = sum(sizes)
    if not task.has_distinct_graphs(need):
        raise TaskError(f"G({task.deg},{task.path_len}) with num_nodes={task.num_nodes} has only "
                        f"{task.distinct_graphs:,} distinct graphs, fewer than the {need:,} asked for; use more nodes "
                        "or fewer graphs")
    parts = [sample(task, need + need // 10 + 16, generator)]
    while True:
        drawn = cat(parts)
        _, inverse = torch.unique(drawn.keys(), dim=0, return_inverse=True)
        distinct = int(inverse.max()) + 1
        # small tasks run out of distinct graphs: draw more, up to 50x what was asked for
        if distinct >= need or len(drawn) > 50 * need:
            break
        parts.append(sample(task, need + 16, generator))
    if distinct < need:
        raise TaskError(
            f"could not draw {need} distinct graphs of G({task.deg},{task.path_len}) with "
            f"num_nodes={task.num_nodes} (found {distinct}); use more nodes or fewer graphs"
        )
    # keep the first occurrence of each distinct graph, in drawing order
    first = torch.full((distinct,), len(drawn), device=inverse.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(drawn), device=inverse.device), reduce="amin")
    keep = first.sort().values
    out, start = [], 0
    for size in sizes:
        out.append(drawn[keep[start : start + size]])
        start += size
    return out


# --- the authors' text format: "a,b|c,d|.../source,goal=source,n2,...,goal", one graph a line ---


def to_lines(graphs: Graphs) -> list[str]:
    lines = []
    for edges, s, g, path in zip(
        graphs.edges.tolist(), graphs.source.tolist(), graphs.goal.tolist(), graphs.path.tolist()
    ):
        edge_text = "|".join(f"{u},{v}" for u, v in edges)
        lines.append(f"{edge_text}/{s},{g}=" + ",".join(map(str, path)))
    return lines


def write_file(graphs: Graphs, path: str | Path) -> None:
    Path(path).write_text("\n".join(to_lines(graphs)) + "\n")


_LABEL = re.compile(r"\s*-?[0-9]+\s*", re.ASCII)


def _ints(text: str, what: str) -> list[int]:
    """Comma-separated labels written in ASCII digits (int() would also take "٤" and "0_4")."""
    items = text.split(",")
    if not all(_LABEL.fullmatch(x) for x in items):
        raise TaskError(f"{what} {text[:60]!r} is not a comma-separated list of integers")
    values = [int(x) for x in items]
    if any(v < 0 for v in values):
        raise TaskError(f"{what} {text!r} has a negative node label")
    return values


def parse_line(line: str) -> tuple[list[tuple[int, int]], int, int, list[int]]:
    """One line of the text format -> (edges, source, goal, path). Raises TaskError saying what is wrong."""
    head, eq, path_text = line.strip().partition("=")
    edge_text, slash, query = head.partition("/")
    if not eq or not slash:
        raise TaskError("expected 'u,v|u,v|.../source,goal=path'")
    edges = []
    for item in edge_text.split("|"):
        pair = _ints(item, "edge")
        if len(pair) != 2:
            raise TaskError(f"edge {item!r} does not have two nodes")
        edges.append((pair[0], pair[1]))
    query_nodes = _ints(query, "query")
    if len(query_nodes) != 2:
        raise TaskError(f"query {query!r} is not 'source,goal'")
    return edges, query_nodes[0], query_nodes[1], _ints(path_text, "path")


def _arms_of(edges, source, goal, path) -> list[list[int]]:
    """Check that a parsed line is a path-star graph with a correct answer; return its arms."""
    children: dict[int, list[int]] = {}
    for u, v in edges:
        children.setdefault(u, []).append(v)
    arms = []
    for first in children.get(source, []):
        arm = [source, first]
        while arm[-1] in children:
            if len(arm) > len(edges):
                raise TaskError("the edges contain a cycle")
            if len(children[arm[-1]]) != 1:
                raise TaskError(f"node {arm[-1]} is not the source but has {len(children[arm[-1]])} children")
            arm.append(children[arm[-1]][0])
        arms.append(arm)
    nodes = [n for arm in arms for n in arm[1:]] + [source]
    if len(nodes) != len(edges) + 1 or len(set(nodes)) != len(nodes):
        raise TaskError("the edges do not form arms that leave the source with distinct nodes")
    if len({len(a) for a in arms}) != 1:
        raise TaskError(f"arms have different lengths {sorted(len(a) for a in arms)}")
    if path not in arms or path[-1] != goal:
        raise TaskError(f"path {path} is not the arm from source {source} to goal {goal}")
    return arms


def irregular(path: str | Path) -> str | None:
    """What a path is when it exists and is not a regular file ("a FIFO", "a folder", ...); None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the read itself says so
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"


def require_regular(path: str | Path, what: str) -> None:
    """Refuse a path that exists but is not a regular file (a FIFO, a device, a folder, a socket): reading one can
    block forever or never end."""
    kind = irregular(path)
    if kind:
        raise TaskError(f"{path}: {kind}, not a file of {what}; refusing to read it")


def read_text(path: Path, what: str) -> str:
    """A text file's contents, or a TaskError that names the file and says why it cannot be read as `what`."""
    require_regular(path, what)
    try:
        return path.read_text()
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not a text file (byte {err.start} is not UTF-8); expected {what}") from None
    except OSError as err:
        raise TaskError(f"{path}: cannot read {what} ({err.strerror})") from None


def read_file(path: str | Path, num_nodes: int | None = None) -> tuple[Graphs, PathStar]:
    """Read a file in the authors' format. Every malformed line raises TaskError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: no such data file" + (" (it is a folder)" if path.is_dir() else ""))
    text = read_text(path, "graphs in the authors' text format")
    rows, shape = [], None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            raise TaskError(f"{path}:{lineno}: a line of {len(line):,} characters, longer than any graph a model here "
                            f"reads ({MAX_LINE:,})")
        try:
            edges, s, g, answer = parse_line(line)
            arms = _arms_of(edges, s, g, answer)
            this_shape = (len(arms), len(arms[0]))
            if shape is not None and this_shape != shape:
                raise TaskError(f"graph is G{this_shape} but earlier lines are G{shape}")
            if num_nodes is not None and max(max(a) for a in arms) >= num_nodes:
                raise TaskError(f"node label {max(max(a) for a in arms)} is not below num_nodes={num_nodes}")
        except TaskError as err:
            raise TaskError(f"{path}:{lineno}: {err}") from None
        shape = this_shape
        rows.append((edges, s, g, answer, arms))
    if not rows:
        raise TaskError(f"{path}: no graphs in file")
    largest = max(max(max(a) for a in r[4]) for r in rows)
    try:
        task = PathStar(shape[0], shape[1], num_nodes if num_nodes is not None else largest + 1)
    except TaskError as err:
        raise TaskError(f"{path}: {err}") from None
    edges, source, goal, answer, arms = zip(*rows)
    graphs = Graphs(
        torch.tensor(edges), torch.tensor(source), torch.tensor(goal), torch.tensor(answer), torch.tensor(arms)
    )
    return graphs, task
