#!/usr/bin/env python3
"""Re-execute the GPT chapters with papermill at other task shapes, the way a reader would:

    python scripts/run_shapes.py --shapes 3,5,20 2,4,50 [--seed S] [--chapters forward_fails reverse]
                                 [--out _build/shapes] [--param lr 2e-3 --param steps 3000] [--timeout SECONDS]

For each shape (deg, path_len, num_nodes) and chapter it runs
`papermill book/<chapter>.ipynb OUT/<shape>/<chapter>.ipynb --cwd book -p deg D -p path_len L -p num_nodes N`,
with one folder and run cache per shape and seed, OUT/G{D}-{L}-N{N}-s{SEED} (so the chapters of a shape share
their runs, as in the book; a folder's runs/ can be seeded with a sweep's run folders of the same configs), and
appends a row (chapter, shape, return code, wall seconds, the last error line) to OUT/shapes.csv. Exit status 1 if any
chapter failed. Every training setting comes from the recipe (nexttok.recipe) unless `--param NAME VALUE` sets
it (passed on as papermill's -p NAME VALUE, as the fix a chapter's precondition names would be; such a shape
gets its own folder and run cache).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the chapters that train the GPT at the parameters' shape (the others read committed results or a fixed model)
GPT_CHAPTERS = ["task", "forward_fails", "clever_hans", "indecipherable", "reverse", "grid", "teacherless", "remedies"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", required=True, help="deg,path_len,num_nodes triples, e.g. 3,5,20")
    parser.add_argument("--chapters", nargs="+", default=GPT_CHAPTERS)
    parser.add_argument("--out", default=str(ROOT / "_build" / "shapes"))
    parser.add_argument("--book", default=str(ROOT / "book"), help="the folder of the chapters (default: book/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds a cell may run (a kernel that stops answering fails its chapter, not the queue)")
    parser.add_argument("--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a chapter parameter to set (papermill -p NAME VALUE), e.g. --param lr 2e-3; repeatable")
    args = parser.parse_args(argv)
    params = [x for name, value in args.param for x in ("-p", name, value)]
    suffix = "".join(f"-{name}={value}" for name, value in args.param)
    shapes = []
    for shape in args.shapes:
        try:
            triple = tuple(int(x) for x in shape.split(","))
        except ValueError:
            triple = ()
        if len(triple) != 3:
            parser.error(f"--shapes {shape!r} is not deg,path_len,num_nodes")
        shapes.append(triple)
    book = Path(args.book)
    missing = [c for c in args.chapters if not (book / f"{c}.ipynb").is_file()]
    if missing:
        parser.error(f"no chapter {', '.join(missing)} in {book}/ (the GPT chapters: {' '.join(GPT_CHAPTERS)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "shapes.csv"
    header = ["chapter", "deg", "path_len", "num_nodes", "seed", "params", "returncode", "wall_seconds", "error"]
    new = not log.exists()
    if not new and log.read_text().splitlines()[:1] != [",".join(header)]:
        parser.error(f"{log} has other columns (an older run_shapes.py wrote it): choose another --out")
    failed = 0
    with open(log, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(header)
        for deg, path_len, num_nodes in shapes:
            folder = out / f"G{deg}-{path_len}-N{num_nodes}-s{args.seed}{suffix}"
            folder.mkdir(exist_ok=True)
            env = {**os.environ, "NEXTTOK_RUNS": str((folder / "runs").resolve())}
            for chapter in args.chapters:
                cmd = [sys.executable, "-m", "papermill", str(book / f"{chapter}.ipynb"),
                       str(folder / f"{chapter}.ipynb"), "--cwd", str(book), "-p", "deg", str(deg),
                       "-p", "path_len", str(path_len), "-p", "num_nodes", str(num_nodes), "-p", "seed", str(args.seed),
                       "--execution-timeout", str(args.timeout), *params]
                start = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                wall = time.perf_counter() - start
                error = ""
                if r.returncode:
                    failed += 1
                    lines = [l for l in (r.stderr + r.stdout).splitlines() if "Error" in l or "Precondition" in l]
                    error = lines[-1][:300] if lines else (r.stderr.strip().splitlines() or [""])[-1][:300]
                writer.writerow([chapter, deg, path_len, num_nodes, args.seed, " ".join(f"{n}={v}" for n, v in args.param),
                                 r.returncode, round(wall, 1), error])
                f.flush()
                print(f"G({deg},{path_len}) N={num_nodes}{suffix} {chapter}: rc {r.returncode}, {wall:.0f} s {error}",
                      flush=True)
    print(f"wrote {log}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
