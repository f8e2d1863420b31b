"""pytest configuration shared by tests/ and the notebooks that nbval runs from book/."""


def pytest_collection_modifyitems(items):
    # nbval waits 5 s (hard-coded) for a cell's output messages after the cell has run; a chapter that has
    # just trained a model on a busy 2-core machine can take longer to flush them, which fails the cell
    # although it ran. The cell's own time limit (--nbval-cell-timeout) is unchanged.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
