"""pytest configuration shared by tests/ and the notebooks that nbval runs from book/."""
import importlib.util
import os
from pathlib import Path

# nbval reads a kernel's output messages only after a cell has finished. A chapter that trains for minutes
# with a live progress bar (an ipywidget under tqdm.auto) queues so many that the last ones were lost, and
# the cell failed "waiting for output" although it had run. Under the tests the bars refresh every 30 s;
# the kernels that nbval starts inherit this (a reader's Jupyter and `make book` keep tqdm's default).
os.environ.setdefault("TQDM_MININTERVAL", "30")

# Under pytest-xdist (`make test` runs one worker per core) each worker, and every kernel it starts, gets its
# share of the cores: torch's default of one thread per core in every worker would oversubscribe them. The
# models here are small enough that one thread per run costs little, and the committed sweeps ran that way.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    import torch

    torch.set_num_threads(_threads)


def _chapter_start_order() -> list[str]:
    """The chapters that train, in the order `make book` starts them (scripts/execute_book.py)."""
    spec = importlib.util.spec_from_file_location("execute_book", Path(__file__).parent / "scripts" / "execute_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.START_FIRST


def _is_chapter(item) -> bool:
    return item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid


def pytest_collection_modifyitems(items):
    for item in items:
        # nbval also waits only 5 s (hard-coded) for those messages once a cell has run; allow a busy machine more.
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
        # a chapter executed under nbval trains its runs: the slow tier
        if _is_chapter(item):
            item.add_marker("slow")
    # Longest first, so that no worker is left alone with a long file at the end (`make test` hands out whole files
    # in this order, --no-loadscope-reorder): the chapters that train, in the order that lets the others read their
    # runs from the cache instead of waiting for them; the other chapters; the files with slow tests (processes,
    # installs, builds); then the many small tests, which fill in the end.
    first = _chapter_start_order()
    files = {item.nodeid.split("::")[0]: None for item in items}
    slow_files = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}

    def rank(path: str) -> tuple:
        name = Path(path).stem
        if path.endswith(".ipynb"):
            return (0, first.index(name) if name in first else len(first))
        return (1 if path in slow_files else 2,)

    order = {path: (rank(path), i) for i, path in enumerate(files)}
    items.sort(key=lambda item: order[item.nodeid.split("::")[0]])
