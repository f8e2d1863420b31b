import contextlib
import importlib.util
import signal
from pathlib import Path

import pytest
import torch

from nexttok import PathStar, RunConfig, resolve, sample, seeded_generator

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """scripts/NAME.py as a module: the scripts are files to run, not a package to import."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def task():
    return PathStar(deg=2, path_len=5, num_nodes=20)


@pytest.fixture
def graphs(task):
    return sample(task, 64, seeded_generator(0, "test-fixture"))


def tiny_config(**overrides) -> RunConfig:
    """A run small enough for a unit test (a few seconds on one core), resolved."""
    base = dict(deg=2, path_len=4, num_nodes=12, layers=1, dim=32, heads=2, steps=8, batch_size=32,
                warmup=2, n_test=64, eval_every=4, ckpt_every=4, device="cpu")
    base.update(overrides)
    return resolve(RunConfig(**base))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@contextlib.contextmanager
def interrupt_during(monkeypatch, step: int):
    """Ctrl-C arrives in the middle of training step `step` (1-based) of every run started inside the block."""
    from nexttok.train import Run

    original = Run.train_step

    def interrupted(self):
        if self.step == step - 1:
            signal.raise_signal(signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Run, "train_step", interrupted)
    try:
        yield
    finally:
        monkeypatch.setattr(Run, "train_step", original)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread (many times faster than two on a machine whose cores are busy), and a
    run resumed in a subprocess on one thread then matches a straight one bit for bit. A module asks for it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def with_flags(argv, **changes):
    """CLI arguments with each `--flag`'s value replaced, or the flag added: a call one setting away from another."""
    argv = list(argv)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = str(value)
        else:
            argv += [flag, str(value)]
    return argv
