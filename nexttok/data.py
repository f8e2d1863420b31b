"""Where the graphs come from: fresh graphs every step (online), or a fixed train set as the authors
used, plus a held-out test set. Everything lives on the device as tensors; a batch is a pure function
of (seed, step), so resuming a run replays exactly the batches it would have seen, and under torchrun
each rank takes its slice of the same global batch."""
from __future__ import annotations

import torch

from .config import RunConfig
from .distributed import Shard
from .graphs import Graphs, PathStar, TaskError, read_file, sample, sample_distinct, seeded_generator
from .resolve import task_of


class OnlineData:
    """A fresh batch of graphs at every step. A test graph can reappear in training only by chance:
    G(2,5) over 20 labels has about 6e10 distinct graphs."""

    def __init__(self, task: PathStar, seed: int, batch_size: int, device, shard: Shard = Shard()):
        self.task, self.seed, self.batch_size, self.device, self.shard = task, seed, batch_size, device, shard

    def batch(self, step: int) -> Graphs:
        graphs = sample(self.task, self.batch_size, seeded_generator(self.seed, "train", step, device=self.device))
        return graphs[self.shard.slice(self.batch_size)]


class FixedData:
    """Epochs over a fixed set: a new permutation per epoch, the last partial batch dropped."""

    def __init__(self, graphs: Graphs, seed: int, batch_size: int, shard: Shard = Shard()):
        if len(graphs) < batch_size:
            raise TaskError(f"the train set has {len(graphs)} graphs, fewer than one batch of {batch_size}")
        self.graphs, self.seed, self.batch_size, self.shard = graphs, seed, batch_size, shard
        self.steps_per_epoch = len(graphs) // batch_size
        self._epoch, self._perm = None, None

    def batch(self, step: int) -> Graphs:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            device = self.graphs.source.device
            self._perm = torch.randperm(len(self.graphs), generator=seeded_generator(self.seed, "epoch", epoch, device=device), device=device)
            self._epoch = epoch
        rows = self._perm[i * self.batch_size : (i + 1) * self.batch_size]
        return self.graphs[rows[self.shard.slice(self.batch_size)]]


def load_data(cfg: RunConfig, device, shard: Shard = Shard()) -> tuple[OnlineData | FixedData, Graphs, PathStar]:
    """(train source, test graphs, task) for a run config; under torchrun, shard says which slice of
    each global batch this rank trains on."""
    if cfg.train_file:
        train, task = read_file(cfg.train_file, cfg.num_nodes)
        test, test_task = read_file(cfg.test_file, cfg.num_nodes)
        if (task.deg, task.path_len) != (test_task.deg, test_task.path_len):
            raise TaskError(f"train file is G({task.deg},{task.path_len}) but test file is G({test_task.deg},{test_task.path_len})")
        if (task.deg, task.path_len) != (cfg.deg, cfg.path_len):
            raise TaskError(f"the data files hold G({task.deg},{task.path_len}) graphs: pass --deg {task.deg} --path-len {task.path_len}")
        task = task_of(cfg)
        return FixedData(train.to(device), cfg.seed, cfg.batch_size, shard), test.to(device), task
    task = task_of(cfg)
    if cfg.n_train:
        train, test = sample_distinct(task, [cfg.n_train, cfg.n_test], seeded_generator(cfg.seed, "data", device=device))
        return FixedData(train, cfg.seed, cfg.batch_size, shard), test, task
    test = sample(task, cfg.n_test, seeded_generator(cfg.seed, "test", device=device))
    return OnlineData(task, cfg.seed, cfg.batch_size, device, shard), test, task
