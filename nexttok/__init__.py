"""nexttok: a reproduction of Bachmann & Nagarajan, "The Pitfalls of Next-Token Prediction" (ICML 2024)."""
import os as _os
import signal as _signal
import sys as _sys
import threading as _threading


def _stop(signum, frame):
    """The command line's stop signals while it starts (its imports take a second or more; nothing is written yet):
    one line and 128 + the signal's number, never a KeyboardInterrupt traceback from inside an import, nor a death
    with no word. An exit at once: an exception raised inside an import can be swallowed by the library importing."""
    _sys.stderr.write(f"nexttok: interrupted ({_signal.Signals(signum).name}) while starting; nothing was written\n")
    _sys.stderr.flush()
    _os._exit(128 + signum)


# The `nexttok` command and `python -m nexttok` (while the package is imported, argv[0] is "-m") install the
# handler first, before the slow imports; `nexttok.cli.main` replaces it with its own. A program importing the
# package keeps its own handlers.
if (_sys.argv[:1] == ["-m"] or _sys.argv[0].endswith("/nexttok") if _sys.argv else False) and \
        _threading.current_thread() is _threading.main_thread():
    for _s in (_signal.SIGINT, _signal.SIGTERM, getattr(_signal, "SIGHUP", None)):
        if _s is not None:
            _signal.signal(_s, _stop)

from .config import RunConfig  # noqa: E402
from .resolve import resolve  # noqa: E402
from .graphs import Graphs, PathStar, TaskError, read_file, sample, seeded_generator, write_file  # noqa: E402
from .tokens import Vocab, encode  # noqa: E402
from .train import Run, train  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .objectives import objective  # noqa: E402
from .records import RunRecord  # noqa: E402

__all__ = ["RunConfig", "resolve", "Graphs", "PathStar", "TaskError", "read_file", "sample", "seeded_generator",
           "write_file", "Vocab", "encode", "Run", "train", "evaluate", "objective", "RunRecord"]
__version__ = "0.1.0"
