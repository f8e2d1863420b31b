"""pytest configuration shared by tests/ and the notebooks that nbval runs from book/."""
import os

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


def pytest_collection_modifyitems(items):
    for item in items:
        # nbval also waits only 5 s (hard-coded) for those messages once a cell has run; allow a busy machine more.
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
        # a chapter executed under nbval trains its runs: the slow tier
        if item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid:
            item.add_marker("slow")
