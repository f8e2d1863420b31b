#!/usr/bin/env python3
"""Execute the book's chapters into Jupyter Book's execution cache, several at a time:

    python scripts/execute_book.py [--jobs N] [--root .] [--cache ROOT/_build/.jupyter_cache]

`jupyter-book build` (execute_notebooks: cache) runs the chapters one after another, each on every core; this
runs them side by side, one core (one torch thread) each. `make book` calls it first, and the build then takes
every chapter from the cache. The chapters share their runs through the run cache, which lets one chapter wait
for a run another is training. jupyter-cache logs a failing chapter's traceback; the script names the chapter
and exits with status 1.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


# The order the chapters start in. The run cache makes a chapter that reads a run another chapter is training wait
# for it, holding its core idle: in book order forward_fails and clever_hans start together and clever_hans waits
# about 100 s for the forward run (50 s of `make book`). So the chapters that train start first, forward_fails
# (whose forward run four chapters read) at the head and the longest after it; the chapters that only read runs
# start last, in book order, and find their runs trained. A chapter not named here keeps its book order after these.
START_FIRST = ["forward_fails", "teacherless", "reverse", "indecipherable", "pretrained"]


def start_rank(uri: str) -> int:
    name = Path(uri).stem
    return START_FIRST.index(name) if name in START_FIRST else len(START_FIRST)


def toc_notebooks(root: Path) -> list[Path]:
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(ROOT), help="the book's folder (with _toc.yml)")
    parser.add_argument("--cache", help="default: ROOT/_build/.jupyter_cache, where jupyter-book looks")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="chapters at a time (default: one per core)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a cell may run")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    # each chapter's kernel gets its share of the cores (the kernels inherit this environment)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    from jupyter_cache import get_cache
    from jupyter_cache.executors.basic import ExecutionWorkerLocalMProc, ProcessData

    root = Path(args.root).resolve()
    if not (root / "_toc.yml").is_file():
        parser.error(f"{root} has no _toc.yml: --root is the book's folder")
    cache = get_cache(args.cache or str(root / "_build" / ".jupyter_cache"))
    notebooks = toc_notebooks(root)
    for nb in notebooks:
        cache.add_nb_to_project(str(nb))
    order = {str(nb): i for i, nb in enumerate(notebooks)}
    todo = sorted(cache.list_unexecuted(list(order)), key=lambda r: (start_rank(r.uri), order[r.uri]))
    print(f"executing {len(todo)} of {len(notebooks)} chapters, {args.jobs} at a time, in this order: "
          f"{', '.join(Path(r.uri).stem for r in todo)}", flush=True)
    # jupyter-cache's worker executes a chapter in its own folder and caches it; one chapter per task, so a
    # core that finishes early takes the next chapter
    work = [ProcessData(r.pk, r.uri, cache, args.timeout, False) for r in todo]
    with multiprocessing.Pool(args.jobs) as pool:
        codes = list(pool.imap_unordered(ExecutionWorkerLocalMProc(), work, chunksize=1))
    failed = [uri for code, uri in codes if code]
    for uri in failed:  # jupyter-cache has logged each one's traceback above
        print(f"FAILED {uri}", file=sys.stderr)
    print(f"executed {len(codes) - len(failed)} chapter(s), {len(failed)} failed, {len(notebooks) - len(todo)} already cached")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
