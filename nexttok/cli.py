"""The `nexttok` command line: generate, train, bench, sweep. Bad input ends in a one-line error and
exit status 2, never a traceback."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import DEVICES, MODELS, PRECISIONS, RunConfig
from .graphs import PathStar, TaskError, sample, seeded_generator, to_lines
from .objectives import MODES
from .runs import run_dir
from .sweep import NAMED as NAMED_SWEEPS

CHOICES = {"mode": MODES, "model": MODELS, "device": DEVICES, "precision": PRECISIONS}
HELP = {
    "deg": "degree d: arms leaving the source", "path_len": "path length l: nodes per arm, source included",
    "num_nodes": "N: node labels 0..N-1", "n_train": "fixed train set size (0: fresh graphs every step)",
    "n_test": "held-out test graphs", "train_file": "train graphs in the authors' text format",
    "test_file": "test graphs in the authors' text format",
    "compile": "torch.compile the model for training (numerics change slightly; pays on GPUs)",
    "only_position": "grade this target position alone (1-based, target order); 0 grades all",
    "model": "gpt, mamba, or a pretrained Hugging Face model (gpt2..., pythia-...; needs nexttok[pretrained]; "
             "then --layers, --dim and --heads are ignored) (default gpt)",
    "weights": "pretrained models: load from this local folder (written by save_pretrained) instead of the hub",
}


def _add_config_flags(parser: argparse.ArgumentParser, fields=None) -> None:
    for f in dataclasses.fields(RunConfig):
        if fields is not None and f.name not in fields:
            continue
        if f.type == "bool":
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, action="store_true", help=HELP.get(f.name))
            continue
        kind = {"int": int, "float": float, "str": str, "str | None": str}[f.type]
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default,
                            choices=CHOICES.get(f.name), help=HELP.get(f.name, f"default {f.default}"))


def _config(args) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(args).items() if k in names})


def cmd_generate(args) -> None:
    task = PathStar(args.deg, args.path_len, args.num_nodes)
    if args.n < 1:
        raise TaskError(f"-n must be at least 1 (got {args.n})")
    lines = to_lines(sample(task, args.n, seeded_generator(args.seed, "generate")))
    text = "\n".join(lines) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)


def cmd_train(args) -> None:
    from .distributed import teardown
    from .train import train

    cfg = _config(args)
    out = args.out or run_dir(cfg)
    run, metrics = train(cfg, out, resume=args.resume, progress=not args.quiet)
    teardown(run.shard)  # leave torchrun's process group cleanly
    if metrics:  # under torchrun only rank 0 has metrics, and only it reports
        print(json.dumps(metrics))
        print(f"wrote {out}/", file=sys.stderr)


def cmd_bench(args) -> None:
    from .bench import bench, time_to_result

    if args.to_result:
        if args.mode is None:  # the time-to-result benchmark is the default reverse run
            args.mode = "reverse"
        if not 0 < args.target <= 1 or args.check_every < 1:
            raise TaskError("--target must be in (0, 1] and --check-every at least 1")
        result = time_to_result(_config(args), args.target, args.check_every, progress=not args.json)
    else:
        args.mode = args.mode or "forward"
        result = bench(_config(args), train_steps=args.train_steps)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>26}: {v:.4g}" if isinstance(v, float) else f"{k:>26}: {v}")


def cmd_sweep(args) -> int:
    from .sweep import collect, load_sweep, parse_shard, run_sweep

    configs = load_sweep(args.sweep)
    out = args.out or f"sweeps/{Path(args.sweep).stem}"
    if args.collect:
        table, missing = collect(configs, out)
        print(f"wrote {table}: {len(configs) - len(missing)} of {len(configs)} configs", file=sys.stderr)
        if missing:
            print("missing: " + ", ".join(f"{c.mode} seed {c.seed} ({c.key()})" for c in missing), file=sys.stderr)
            return 1
        return 0
    table = run_sweep(configs, out, parse_shard(args.shard), progress=not args.quiet)
    print(f"wrote {table}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexttok", description="The path-star task of 'The Pitfalls of Next-Token Prediction'.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write path-star graphs in the authors' text format")
    _add_config_flags(gen, {"deg", "path_len", "num_nodes", "seed"})
    gen.add_argument("-n", type=int, default=1000, help="number of graphs")
    gen.add_argument("-o", "--output", help="output file (default: stdout)")
    gen.set_defaults(func=cmd_generate)

    tr = sub.add_parser("train", help="train a model and evaluate it")
    _add_config_flags(tr)
    tr.add_argument("--out", help="run folder (default: the run cache, runs/<mode>-<config hash>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    be = sub.add_parser("bench", help="training, generation and sampling speed")
    _add_config_flags(be, {f.name for f in dataclasses.fields(RunConfig)} - {"eval_every", "ckpt_every", "train_file", "test_file", "n_train"})
    be.set_defaults(mode=None)  # forward for the speed figures, reverse for --to-result
    be.add_argument("--train-steps", type=int, default=10, help="training steps to time")
    be.add_argument("--to-result", action="store_true",
                    help="train the run (reverse unless --mode) until gen_accuracy reaches --target; report the time")
    be.add_argument("--target", type=float, default=0.95, help="gen_accuracy that counts as learned (--to-result)")
    be.add_argument("--check-every", type=int, default=50, help="steps between accuracy checks (--to-result)")
    be.add_argument("--json", action="store_true", help="print JSON")
    be.set_defaults(func=cmd_bench)

    sw = sub.add_parser("sweep", help="run a list of configs into one results table")
    sw.add_argument("sweep", help=f"a sweep file (JSON or YAML) or a named grid: {', '.join(NAMED_SWEEPS)}")
    sw.add_argument("--out", help="sweep folder: runs/ (the run cache) and the results tables (default: sweeps/<name>)")
    sw.add_argument("--shard", default="0/1", help="run the i-th of n disjoint slices, i from 0 (default 0/1)")
    sw.add_argument("--collect", action="store_true", help="merge the shards' tables into results.csv")
    sw.add_argument("--quiet", action="store_true", help="no progress bars")
    sw.set_defaults(func=cmd_sweep)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (TaskError, ValueError, OSError) as err:  # OSError: an unwritable --out or -o, a full disk
        print(f"nexttok: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nexttok: interrupted", file=sys.stderr)
        return 130
    return status or 0
