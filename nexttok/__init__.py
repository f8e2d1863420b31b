"""nexttok: a reproduction of Bachmann & Nagarajan, "The Pitfalls of Next-Token Prediction" (ICML 2024)."""
from .config import RunConfig
from .resolve import resolve
from .graphs import Graphs, PathStar, TaskError, read_file, sample, seeded_generator, write_file
from .tokens import Vocab, encode
from .train import Run, train
from .evaluate import evaluate
from .objectives import objective
from .records import RunRecord

__all__ = ["RunConfig", "resolve", "Graphs", "PathStar", "TaskError", "read_file", "sample", "seeded_generator",
           "write_file", "Vocab", "encode", "Run", "train", "evaluate", "objective", "RunRecord"]
__version__ = "0.1.0"
