"""The `nexttok` command line: generate, train, bench, sweep. Bad input ends in a one-line error and
exit status 2, never a traceback; a run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) saves its checkpoint
and exits 128 + the signal's number, as a shell reports a process a signal ended."""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

from .bench import bench, time_to_result
from .config import DEVICES, FIELDS, PRECISIONS, RECIPE_FIELDS, RunConfig
from .distributed import teardown
from .evaluate import LEARNED
from .graphs import PathStar, TaskError, one_line, sample, seeded_generator, to_lines
from .objectives import MODES
from .objectives.diffusion import SCHEDULES as DIFFUSION_SCHEDULES, WEIGHTS as DIFFUSION_WEIGHTS
from .models import MODELS
from .resolve import resolve
from .rundir import Interrupted, check_folder, check_not_nested, finished_metrics
from .runs import run_dir
from .sweep import NAMED as NAMED_SWEEPS, collect, config_name, load_sweep, parse_shard, run_sweep, select
from .devices import resolve_device
from .train import train

GENERATE_CHUNK = 10_000  # graphs drawn and written at a time: -n is bounded by the disk, not the memory, and a
# write error (a full disk) surfaces within a second

CHOICES = {"mode": MODES, "model": MODELS, "device": DEVICES, "precision": PRECISIONS, "positions": ("rope", "learned"),
           "diffusion_weight": DIFFUSION_WEIGHTS, "diffusion_schedule": DIFFUSION_SCHEDULES}
HELP = {
    "deg": "degree d: arms leaving the source", "path_len": "path length l: nodes per arm, source included",
    "num_nodes": "N: node labels 0..N-1", "n_train": "fixed train set size (0: fresh graphs every step)",
    "n_test": "held-out test graphs", "train_file": "train graphs in the authors' text format",
    "test_file": "test graphs in the authors' text format",
    "compile": "torch.compile the model for training (numerics change slightly; pays on GPUs)",
    "mode": "the training objective. At the recipe on a CPU reverse learns G(2,5), forward stops at 1/d, diffusion "
            "(3 layers, 8,000 steps on a fixed set of 50,000 graphs at the cosine masking rate) learns it on 3 seeds "
            "of 4, bst (4 layers, 6,000 steps) on 3 seeds of 5; teacherless, hybrid, dropout and mtp are not learned "
            "within a 30-minute CPU run (the hybrid learns G(2,4) at --layers 3 --steps 10000 on some seeds): their "
            "papers trained 6-12 layers on 1-100M graphs (a GPU; nexttok/results/recipe.md)",
    "only_position": "grade this target position alone (1-based, target order); 0 grades all",
    "model": "gpt, mamba, or a pretrained Hugging Face model (gpt2..., pythia-...; needs nexttok[pretrained]; "
             "then --layers, --dim and --heads are ignored)",
    "weights": "pretrained models: load from this local folder (written by save_pretrained) instead of the hub",
    "mtp_heads": "--mode mtp: output heads; head j predicts the token j places ahead",
    "input_dropout": "--mode dropout: probability that a fed-back target token is replaced by $",
    "hybrid_fraction": "--mode hybrid: fraction of each batch's graphs that also get a teacherless copy",
    "diffusion_weight": "--mode diffusion: token (mean over the masked tokens) or elbo (each sequence weighted 1/r)",
    "diffusion_schedule": "--mode diffusion: the masking rate r, uniform (from U(0, 1]) or cosine (cos(pi u / 2), more masks)",
    "init_from": "start from the weights of another run (its checkpoint.pt, its run folder, or its name <mode>-<key> "
                 "in the run cache beside --out): a fresh optimiser and schedule; the model must match (a curriculum: "
                 "G(2,3), then G(2,4) from its weights, ...)",
    "positions": "gpt: rotary (rope) or learned absolute position embeddings, as the authors' GPT",
    "n_eval": "test graphs evaluated every eval_every steps (the final evaluation uses all n_test)",
    "probe_gradients": "record the gradient norm of each target position's loss at every evaluation (a probe)",
}


def _add_config_flags(parser: argparse.ArgumentParser, fields=None) -> None:
    for f in FIELDS.values():
        if fields is not None and f.name not in fields:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action="store_true", help=HELP.get(f.name))
            continue
        kind = {"int": int, "float": float, "str": str}[f.type.split(" | ")[0]]
        default = "the recipe's (nexttok.recipe)" if f.name in RECIPE_FIELDS else f.default
        parser.add_argument(flag, dest=f.name, type=kind, default=f.default, choices=CHOICES.get(f.name),
                            help=HELP.get(f.name, "") + f" (default: {default})")


def _config(args) -> RunConfig:
    """The config of the command's flags, resolved (checked, the recipe's values filled in)."""
    return resolve(RunConfig(**{k: v for k, v in vars(args).items() if k in FIELDS}))


def cmd_generate(args) -> None:
    task = PathStar(args.deg, args.path_len, args.num_nodes)
    if args.n < 1:
        raise TaskError(f"-n must be at least 1 (got {args.n})")
    generator = seeded_generator(args.seed, "generate")
    chunk = min(GENERATE_CHUNK, task.rows_per_chunk)  # large graphs: fewer at a time
    out = sys.stdout if args.output in (None, "-") else open(args.output, "w")
    try:
        for start in range(0, args.n, chunk):
            lines = to_lines(sample(task, min(chunk, args.n - start), generator))
            out.write("\n".join(lines) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def cmd_train(args) -> None:
    cfg = _config(args)
    if args.out is not None and not args.out.strip():
        raise TaskError("--out is empty: give a folder, or leave --out out for the run cache")
    out = Path(args.out) if args.out else run_dir(cfg)
    finished = finished_metrics(out, cfg) if args.resume and out.is_dir() else None
    if finished is not None:  # a finished run: report it
        print(json.dumps(finished))
        return
    check_not_nested(out)  # a folder that will be refused is refused before anything is said about it
    if out.is_dir():
        check_folder(out, cfg, args.resume, locked=False)
    if args.resume and not out.exists():
        print(f"nexttok: no run in {out}: starting a new run there", file=sys.stderr)
    elif args.resume and out.is_dir() and not (out / "checkpoint.pt").exists():
        print(f"nexttok: no checkpoint in {out}: starting a new run there", file=sys.stderr)
    run, metrics = train(cfg, out, resume=args.resume, progress=not args.quiet)
    teardown(run.shard)  # leave torchrun's process group cleanly
    if metrics:  # under torchrun only rank 0 has metrics, and only it reports
        print(json.dumps(metrics))
        print(f"wrote {out}/", file=sys.stderr)


def cmd_bench(args) -> None:
    if args.to_result:
        if args.mode is None:  # the time-to-result benchmark is the default reverse run
            args.mode = "reverse"
        if not 0 < args.target <= 1 or args.check_every < 1:
            raise TaskError("--target must be in (0, 1] and --check-every at least 1")
        result = time_to_result(_config(args), args.target, args.check_every, progress=not args.json)
    else:
        if args.train_steps < 1:
            raise TaskError(f"--train-steps must be at least 1 (got {args.train_steps})")
        args.mode = args.mode or "forward"
        cfg = _config(args)
        if args.baseline and (cfg.model != "gpt" or resolve_device(cfg.device).type != "cpu"):
            raise TaskError("--baseline times the authors'-style GPT loop on the CPU: use --device cpu --model gpt")
        result = bench(cfg, train_steps=args.train_steps, baseline_loop=args.baseline)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>32}: {v:.4g}" if isinstance(v, float) else f"{k:>32}: {v}")


def cmd_sweep(args) -> int:
    configs = select(load_sweep(args.sweep), args.where)
    out = args.out or f"sweeps/{Path(args.sweep).stem}"
    if args.collect:
        table, missing = collect(configs, out)
        print(f"wrote {table}: {len(configs) - len(missing)} of {len(configs)} configs", file=sys.stderr)
        if missing:
            print("missing: " + ", ".join(config_name(c) for c in missing), file=sys.stderr)
            return 1
        return 0
    table = run_sweep(configs, out, parse_shard(args.shard), progress=not args.quiet)
    print(f"wrote {table}", file=sys.stderr)
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, whose errors are one line (its usage block is what --help prints)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message, 400)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nexttok", description="The path-star task of 'The Pitfalls of Next-Token Prediction'.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    _add_config_flags(be, set(FIELDS) - {"eval_every", "ckpt_every", "train_file", "test_file", "n_train", "init_from",
                                         "probe_gradients"})
    be.set_defaults(mode=None)  # forward for the speed figures, reverse for --to-result
    be.add_argument("--train-steps", type=int, default=10, help="training steps to time")
    be.add_argument("--to-result", action="store_true",
                    help="train the run (reverse unless --mode) until gen_accuracy reaches --target; report the time")
    be.add_argument("--target", type=float, default=LEARNED,
                    help=f"gen_accuracy that counts as learned (--to-result; default {LEARNED})")
    be.add_argument("--check-every", type=int, default=50, help="steps between accuracy checks (--to-result)")
    be.add_argument("--baseline", action="store_true",
                    help="also time a loop written like the authors' (per-sample data loading, full-sequence head, "
                         "no KV cache) and their per-graph sampler, and report the ratios")
    be.add_argument("--json", action="store_true", help="print JSON")
    be.set_defaults(func=cmd_bench)

    sw = sub.add_parser("sweep", help="run a list of configs into one results table")
    sw.add_argument("sweep", help=f"a sweep file (JSON or YAML) or a named grid: {', '.join(NAMED_SWEEPS)}")
    sw.add_argument("--out", help="sweep folder: runs/ (the run cache) and the results tables (default: sweeps/<name>)")
    sw.add_argument("--shard", default="0/1", help="run the i-th of n disjoint slices, i from 0 (default 0/1)")
    sw.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                    help="only the configs whose field has this value (repeatable; e.g. --where deg=4)")
    sw.add_argument("--collect", action="store_true", help="merge the shards' tables into results.csv")
    sw.add_argument("--quiet", action="store_true", help="no progress bars")
    sw.set_defaults(func=cmd_sweep)
    return parser


def out_of_memory(err: RuntimeError) -> bool:
    text = str(err)
    return (type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in text
            or "not enough memory" in text or "out of memory" in text.lower())


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) outside a training step, raised as Ctrl-C is, so it ends in one line."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stopped(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals():
    """While the command runs: SIGINT raises KeyboardInterrupt and SIGTERM / SIGHUP raise Stopped, which main turns
    into one line and 128 + the signal's number (a training step handles them itself, nexttok.rundir); the
    handlers before are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _stopped}
    if hasattr(signal, "SIGHUP"):
        wanted[signal.SIGHUP] = _stopped
    previous = {s: signal.signal(s, handler) for s, handler in wanted.items()}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def printable(message: str) -> str:
    """A message with every control character but its own line breaks escaped (a value a user gave can hold a
    carriage return or a terminal escape that would overwrite the line)."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in message)


def main(argv=None) -> int:
    with stop_signals():
        return _main(argv)


def _main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = args.func(args)
    except Interrupted as err:
        print(f"nexttok: {err}", file=sys.stderr)
        return 128 + err.signum
    except (TaskError, ValueError, OSError) as err:  # OSError: an unwritable --out or -o, a full disk
        # our own messages are written for the terminal; another library's may run over several lines
        print(f"nexttok: error: {printable(str(err)) if isinstance(err, TaskError) else one_line(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("nexttok: error: out of memory: ask for fewer or smaller graphs", file=sys.stderr)
        return 2
    except RuntimeError as err:  # torch reports a failed allocation as RuntimeError (OutOfMemoryError on CUDA)
        if not out_of_memory(err):
            raise
        print(f"nexttok: error: out of memory ({one_line(err, 200)}): ask for fewer or smaller "
              "graphs, a smaller batch or model", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"nexttok: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    return status or 0
