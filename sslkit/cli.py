"""The ``sslkit`` command.

    sslkit list                                         datasets, methods, backbones
    sslkit train --method simclr --data digits --minutes 2 --out runs/simclr
    sslkit eval --checkpoint runs/simclr/checkpoint.pt --protocol knn
    sslkit demo                                         the guided tour (``sslkit.demo``)
    sslkit zoo list | build NAME | card NAME            reference models (``sslkit.zoo``)
    sslkit doctor                                       versions, device, data: can this machine run the kit?
    sslkit exercises strip notebooks/ student/          remove solutions from notebooks
    sslkit exercises grade submissions/ --json out.json score students' notebooks
    torchrun --nproc_per_node=2 -m sslkit train ...     the same training with DDP

Bad values exit with status 2 and a one-line message naming the flag and what is allowed; files or
data that cannot be used (a dataset that cannot be downloaded, an unwritable --out) exit with
status 1 and a message, never a traceback. Ctrl-C during `sslkit train` saves the checkpoint and
the history, then exits with status 130.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

EVAL_PROTOCOLS = ("knn", "linear", "label-efficiency")


def _positive_int():
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value
    return parse


def _positive_float():
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not value > 0 or value != value:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _key_value():
    def parse(text: str) -> tuple[str, Any]:
        key, sep, raw = text.partition("=")
        if not sep or not key.isidentifier():
            raise argparse.ArgumentTypeError(f"takes KEY=VALUE (e.g. temperature=0.2), got {text!r}")
        try:
            value = ast.literal_eval(raw)  # numbers, tuples, True/False/None
        except (ValueError, SyntaxError):
            value = raw                    # anything else is a string
        return key, value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sslkit", description="Self-supervised learning teaching kit.")
    parser.add_argument("--version", action="version", version=f"sslkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list datasets, methods and backbones",
                       description="List what the kit offers.")
    p.add_argument("what", nargs="?", choices=("all", "datasets", "methods", "backbones"), default="all")

    p = sub.add_parser("train", help="train an SSL method",
                       description="Train a method; writes OUT/checkpoint.pt, OUT/history.json and "
                                   "OUT/loss.png. Stops at the first of --minutes/--epochs/--steps.")
    p.add_argument("--method", required=True, help="method name (see `sslkit list methods`)")
    p.add_argument("--data", required=True, help="dataset name (see `sslkit list datasets`)")
    p.add_argument("--split", default="train", help="dataset split to train on (default: train)")
    p.add_argument("--data-option", action="append", default=[], type=_key_value(),
                   metavar="KEY=VALUE", help="dataset option, e.g. size=16 for digits (repeatable)")
    p.add_argument("--root", default="data", help="folder for downloaded datasets (default: data)")
    p.add_argument("--backbone", default=None, help="backbone name (default: chosen by the data)")
    p.add_argument("--set", action="append", default=[], type=_key_value(), metavar="KEY=VALUE",
                   dest="config", help="method setting, e.g. temperature=0.2 (repeatable)")
    p.add_argument("--minutes", type=_positive_float(), help="time budget")
    p.add_argument("--epochs", type=_positive_int(), help="number of epochs")
    p.add_argument("--steps", type=_positive_int(), help="number of optimiser steps")
    p.add_argument("--batch-size", type=_positive_int(), default=256,
                   help="global batch size (split over processes under torchrun; default 256)")
    p.add_argument("--lr", type=_positive_float(), default=None,
                   help="peak learning rate (default: the method's, scaled by batch-size/256)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--out", default=None, help="output folder (default: runs/METHOD-DATA)")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--checkpoint-every", type=_positive_int(), default=None,
                   help="also write the checkpoint every N steps")
    p.add_argument("--knn-every", type=_positive_int(), default=None,
                   help="kNN accuracy on the test split every N steps (and at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (default: on with CUDA, off elsewhere)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("eval", help="evaluate a trained checkpoint",
                       description="Probe the features of a trained method on a labelled dataset.")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `sslkit train`")
    p.add_argument("--protocol", choices=EVAL_PROTOCOLS, default="knn")
    p.add_argument("--data", default=None, help="dataset (default: the one it was trained on)")
    p.add_argument("--data-option", action="append", default=[], type=_key_value(),
                   metavar="KEY=VALUE", help="dataset option (repeatable)")
    p.add_argument("--root", default="data", help="folder for downloaded datasets (default: data)")
    p.add_argument("--k", type=_positive_int(), default=20, help="kNN neighbours (default 20)")
    p.add_argument("--seeds", type=_positive_int(), default=3,
                   help="label-efficiency: labelled subsets per budget (default 3)")
    p.add_argument("--batch-size", type=_positive_int(), default=512)
    p.add_argument("--device", default=None)

    p = sub.add_parser("demo", help="the guided demo (sslkit.demo)", add_help=False,
                       description="Run the demo; arguments are passed to sslkit.demo.main.")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the demo (try --help)")

    p = sub.add_parser("doctor", help="check this machine: versions, device, data, zoo",
                       description="Print the versions, the device the kit would use, where data and the "
                                   "model zoo live, and whether each embedded dataset loads. Exit status 1 "
                                   "when something essential fails.")
    p.add_argument("--root", default="data", help="folder for downloaded datasets (default: data)")

    p = sub.add_parser("exercises", help="exercise notebook tools",
                       description="Tools for the exercise notebooks.")
    ex = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = ex.add_parser("strip", help="write student copies of notebooks without solutions",
                      description="Copy notebooks from SRC to DST with solution blocks removed, the cells "
                                  "that give an exercise away replaced, and outputs cleared.")
    s.add_argument("src", metavar="SRC", help="notebook file or folder with solutions")
    s.add_argument("dst", metavar="DST", help="output folder (outside SRC's folder)")
    s.add_argument("--only", metavar="EXERCISE", default=None,
                   help="hand out one exercise: only the notebook that poses it, other exercises left out")
    s.add_argument("--graded", action="store_true", help="check cells raise on failure (for autograders)")
    s.add_argument("--nbgrader", action="store_true",
                   help="also write nbgrader solution/grade metadata with points (implies --graded)")
    g = ex.add_parser("grade", help="score submitted notebooks with the exercise checkers",
                      description="Run each submission's exercise cells and checkers in a fresh Python "
                                  "process with a time limit; print per-exercise scores and a total.")
    g.add_argument("submissions", metavar="SUBMISSION", nargs="+", help="notebook files or folders of them")
    g.add_argument("--json", metavar="FILE", default=None, help="also write the scores as JSON ('-': stdout)")
    g.add_argument("--timeout", type=_positive_float(), default=60.0,
                   help="seconds allowed for each exercise cell and each check (default 60)")
    g.add_argument("--all-or-nothing", action="store_true",
                   help="no partial credit: an exercise scores its points only when every check passes")
    p = sub.add_parser("zoo", help="reference models: list, build, card (sslkit.zoo)", add_help=False,
                       description="The model zoo; arguments are passed to sslkit.zoo.cli.main.")
    p.add_argument("args", nargs=argparse.REMAINDER, help="zoo arguments (try --help)")
    parser.commands = dict(sub.choices)  # name -> sub-command parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sslkit`` command; returns the exit status (2 for bad input)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["demo"], ["zoo"]):  # the rest belongs to the command's own parser (--help too)
        args = argparse.Namespace(command=argv[0], args=argv[1:])
    else:
        args = parser.parse_args(argv)
    sub = parser.commands[args.command]  # its usage line goes with error messages
    try:
        return _COMMANDS[args.command](args, sub)
    except ValueError as err:  # bad values found past argparse (names, settings, checkpoints)
        sub.error(str(err))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, _dataset_unavailable()) as err:  # files and data the command could not use
        print(f"{sub.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0


def _dataset_unavailable() -> type:
    from sslkit.data import DatasetUnavailable
    return DatasetUnavailable


def _one_line(err: BaseException) -> str:
    """The message of a known error (a DatasetUnavailable adds lines on how to get the data)."""
    text = str(err) if not isinstance(err, OSError) or not err.filename else (
        f"{err.strerror or type(err).__name__}: {err.filename!r}")
    return text.strip() or type(err).__name__


# -- commands -----------------------------------------------------------------------------------
def _list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import sslkit
    if args.what in ("all", "datasets"):
        print("datasets:")
        for name in sslkit.data.names():
            info = sslkit.data.info(name)
            where = "embedded" if info.embedded else "download"
            print(f"  {name:<15} {info.kind:<7} {where:<9} {info.description}")
    if args.what in ("all", "methods"):
        print("methods:")
        for name, text in sslkit.methods.describe().items():
            print(f"  {name:<15} {text}")
    if args.what in ("all", "backbones"):
        print("backbones:")
        for name in sslkit.backbones.names():
            print(f"  {name}")
    return 0


def _load_data(parser: argparse.ArgumentParser, name: str, split: str, root: str,
               options: list[tuple[str, Any]], flag: str = "--data"):
    import sslkit
    known = sslkit.data.names()
    if name not in known:
        parser.error(f"{flag} {name!r} is not a dataset; choose one of: {', '.join(known)}")
    splits = sslkit.data.info(name).splits
    if split not in splits:
        parser.error(f"split {split!r} does not exist for {name!r}; choose one of: {', '.join(splits)}")
    return sslkit.data.load(name, split=split, root=root, **dict(options))


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import warnings

    import sslkit
    from sslkit import distributed as dist
    from sslkit.train import CheckpointWarning, KNNMonitor, LivePlot, fit
    from sslkit.train.safety import check_writable

    if args.minutes is None and args.epochs is None and args.steps is None:
        parser.error("give a stopping rule: --minutes, --epochs or --steps (the first reached wins)")
    methods = sslkit.method_names()
    if args.method not in methods:
        parser.error(f"--method {args.method!r} is not a method; choose one of: {', '.join(methods)}")
    if args.backbone is not None and args.backbone not in sslkit.backbones.names():
        parser.error(f"--backbone {args.backbone!r} is not a backbone; choose one of: "
                     f"{', '.join(sslkit.backbones.names())}")
    out = args.out or os.path.join("runs", f"{args.method}-{args.data}")
    paths = {name: os.path.join(out, name) for name in ("checkpoint.pt", "history.json", "loss.png")}
    dist_device = dist.init_from_env()  # under torchrun: join the process group first
    main_rank = dist.is_main()
    if main_rank:  # every output location, before the data is loaded or a step is taken
        check_writable(out, "--out", folder=True)
        for path in paths.values():
            check_writable(path, "--out")
    try:
        if not main_rank:
            dist.barrier()  # rank 0 downloads/builds the data first
        data = _load_data(parser, args.data, args.split, args.root, args.data_option)
        test = None
        if args.knn_every is not None:
            if "test" not in sslkit.data.info(args.data).splits:
                parser.error(f"--knn-every needs a test split; {args.data!r} has "
                             f"{', '.join(sslkit.data.info(args.data).splits)}")
            test = _load_data(parser, args.data, "test", args.root, args.data_option)
        if main_rank:
            dist.barrier()
        # recorded in the checkpoint, so `sslkit eval` rebuilds the same data
        data.meta = {**data.meta, "options": dict(args.data_option)}
        device = dist_device if dist_device is not None else sslkit.device(args.device)
        method = sslkit.create(args.method, data=data, backbone=args.backbone, **dict(args.config))
        if args.backbone is not None:
            method.backbone_name = args.backbone  # recorded in the checkpoint for `sslkit eval`
        callbacks = [LivePlot(path=paths["loss.png"])]
        if test is not None:
            callbacks.append(KNNMonitor(data, test, every=args.knn_every))
        if main_rank:
            n = dist.world_size()
            print(f"training {args.method} on {args.data} ({len(data)} samples) on {device}"
                  + (f" x {n} processes" if n > 1 else "") + f" -> {out}")
        with warnings.catch_warnings():  # note failed checkpoint writes (they are still shown)
            unsaved = _record_warnings(CheckpointWarning)
            history = fit(method, data, epochs=args.epochs, steps=args.steps, minutes=args.minutes,
                          batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                          callbacks=callbacks, checkpoint=paths["checkpoint.pt"],
                          checkpoint_every=args.checkpoint_every, resume=args.resume,
                          seed=args.seed, device=device, compile=True if args.compile else None,
                          progress=not args.no_progress)
        if not main_rank:
            return 0
        try:
            history.save_json(paths["history.json"])
        except OSError as err:
            unsaved.append(f"{paths['history.json']} ({type(err).__name__}: {err})")
        knn = [e["knn"] for e in history.evals if "knn" in e]
        print(f"{'interrupted' if history.interrupted else 'done'}: {len(history)} steps in "
              f"{history.elapsed:.0f} s, final loss {history.last_loss:.4f}"
              + (f", kNN accuracy {knn[-1]:.3f}" if knn else ""))
        if unsaved:
            print(f"{parser.prog}: error: not written: {'; '.join(unsaved)}", file=sys.stderr)
            return 1
        print(f"wrote {paths['checkpoint.pt']} and {paths['history.json']}")
        if history.interrupted:
            return 130  # the shell's code for "stopped by Ctrl-C", after saving
    finally:
        dist.cleanup()
    return 0


def _record_warnings(category: type) -> list[str]:
    """Inside ``warnings.catch_warnings()``: show warnings as usual, and list the messages of
    ``category`` in the returned list."""
    import warnings

    seen: list[str] = []
    show = warnings.showwarning

    def showwarning(message, cat, *args, **kwargs):
        if issubclass(cat, category):
            seen.append(str(message))
        show(message, cat, *args, **kwargs)

    warnings.showwarning = showwarning
    warnings.simplefilter("always", category)
    return seen


def _eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import sslkit
    from sslkit.train import load_checkpoint, load_method

    cfg = load_checkpoint(args.checkpoint)["config"]
    name = args.data or (cfg.get("data") or {}).get("name")
    if name is None:
        parser.error("the checkpoint does not say which data it was trained on; give --data")
    options = args.data_option or list(((cfg.get("data") or {}).get("options") or {}).items())
    train = _load_data(parser, name, "train", args.root, options)  # checks the name
    splits = sslkit.data.info(name).splits
    if "test" not in splits:
        parser.error(f"--data {name!r} has no test split to evaluate on (splits: {', '.join(splits)})")
    test = _load_data(parser, name, "test", args.root, options)
    device = sslkit.device(args.device)
    method = load_method(args.checkpoint, data=train, device=device)
    train, test = train.to(device), test.to(device)
    ev = sslkit.eval
    if args.protocol == "label-efficiency":
        result = ev.label_efficiency({cfg.get("method", "ssl"): method}, train, test,
                                     seeds=range(args.seeds), k=args.k, batch_size=args.batch_size)
        print(result.table())
        return 0
    tr_f, tr_y = ev.extract_features(method, train, batch_size=args.batch_size)
    te_f, te_y = ev.extract_features(method, test, batch_size=args.batch_size)
    if args.protocol == "knn":
        acc = ev.knn_accuracy(tr_f, tr_y, te_f, te_y, k=args.k)
        print(f"kNN (k={args.k}) accuracy on {name}/test: {acc:.4f}")
    else:
        acc = ev.linear_probe(tr_f, tr_y, te_f, te_y)
        print(f"linear probe accuracy on {name}/test: {acc:.4f}")
    return 0


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    demo = _optional_module(parser, "sslkit.demo", "the demo")
    status = demo.main(list(args.args))
    return int(status or 0)


def _zoo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from sslkit.zoo.cli import main as zoo_main
    return int(zoo_main(list(args.args)) or 0)


def _exercises(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.action == "grade":
        grading = _optional_module(parser, "sslkit.exercises.grade", "grading")
        results = grading.grade(args.submissions, timeout=args.timeout, all_or_nothing=args.all_or_nothing)
        if args.json != "-":
            for r in results:
                print(r.table())
            if len(results) > 1:
                print(f"{len(results)} submissions, mean score {sum(r.score for r in results) / len(results):.2f}")
        if args.json is not None:
            import json
            text = json.dumps({"timeout_s": args.timeout, "all_or_nothing": args.all_or_nothing,
                               "submissions": [r.to_dict() for r in results]}, indent=1)
            if args.json == "-":
                print(text)
            else:
                with open(args.json, "w", encoding="utf-8") as f:
                    f.write(text + "\n")
        return 0
    strip = _optional_module(parser, "sslkit.exercises.strip", "notebook stripping")
    done = strip.strip(args.src, args.dst, only=args.only, graded=args.graded, nbgrader=args.nbgrader)
    for info in done:
        print(info.summary())
    print(f"wrote {len(done)} student notebook(s) to {args.dst}")
    return 0


def _doctor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from sslkit import doctor
    return doctor.run(root=args.root)


def _optional_module(parser: argparse.ArgumentParser, module: str, what: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and module.startswith(err.name):
            parser.error(f"{what} is not available in this installation ({module} is missing)")
        raise


def _version() -> str:
    from sslkit import __version__
    return __version__


_COMMANDS = {"list": _list, "train": _train, "eval": _eval, "demo": _demo, "exercises": _exercises,
             "zoo": _zoo, "doctor": _doctor}

if __name__ == "__main__":
    sys.exit(main())
