"""``sslkit zoo``: list, build and inspect the reference models.

    sslkit zoo list                          entries, purpose, headline metrics, file status
    sslkit zoo build simclr_shapes           retrain from scratch into the package folder
    sslkit zoo build --all --threads 2       every entry, one after the other
    sslkit zoo build mae_shapes --steps 20 --out /tmp/zoo     a quick build elsewhere
    sslkit zoo card simclr_shapes            the card as JSON
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sslkit zoo", description="The model zoo (sslkit.zoo).")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("list", help="entries with purpose, metrics and whether their files are present")
    s.add_argument("--out", default=None, help="zoo folder (default: the package's)")
    s = sub.add_parser("build", help="retrain entries from scratch and write weights + card",
                       description="Retrain zoo entries from scratch (fixed steps and seeds), "
                                   "measure them and write OUT/NAME.pt and OUT/NAME.json.")
    s.add_argument("names", nargs="*", metavar="NAME", help="entries to build (see `sslkit zoo list`)")
    s.add_argument("--all", action="store_true", help="build every entry")
    s.add_argument("--steps", type=_positive_int, default=None,
                   help="override the recipe's step count (quick rebuilds, tests)")
    s.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (torch.set_num_threads)")
    s.add_argument("--out", default=None, help="output folder (default: the package's sslkit/zoo/weights)")
    s.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = sub.add_parser("card", help="print an entry's card as JSON")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--out", default=None, help="zoo folder (default: the package's)")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sslkit zoo``; returns the exit status (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    from sslkit import zoo
    try:
        if args.action == "list":
            print(listing(args.out))
        elif args.action == "card":
            print(json.dumps(zoo.card(args.name, args.out), indent=1))
        else:
            if args.all == bool(args.names):
                parser.error("build: give entry names or --all (not both); entries: "
                             + ", ".join(zoo.names()))
            names = zoo.names() if args.all else args.names
            for n in names:
                zoo.entry(n)  # every name checked before the first (long) build starts
            for n in names:
                t0 = time.time()
                print(f"building {n} ...", flush=True)
                c = zoo.build(n, steps=args.steps, threads=args.threads, out=args.out,
                              device=args.device, progress=not args.no_progress)
                print(f"  {c['steps']} steps in {c['training']['seconds']:.0f} s "
                      f"({c['training']['seconds_per_step']:.3f} s/step), evaluated in "
                      f"{c['evaluation']['seconds']:.0f} s, total {time.time() - t0:.0f} s; "
                      f"{_headline(c)}", flush=True)
    except ValueError as err:  # unknown names, bad settings, missing or modified files
        parser.error(str(err))
    return 0


def _headline(card: dict) -> str:
    """'label kNN 91.2% (init 80.1%, raw 75.0%), linear ...' for the first target."""
    target, m = next(iter(card["metrics"].items()))
    parts = [f"{probe} {100 * r['model']:.1f}% (init {100 * r['random_init']:.1f}%, raw "
             f"{100 * r['raw']:.1f}%)" for probe, r in m.items()]
    return f"{target}: " + ", ".join(parts)


def listing(root=None) -> str:
    """One block per entry: name, status of its files, purpose, steps/time and headline metrics."""
    from sslkit import zoo
    lines = []
    for name in zoo.names():
        e = zoo.entry(name)
        try:
            c = zoo.verify(name, root)
            status = "ok" if c.get("steps") == e.steps else f"quick build ({c.get('steps')}/{e.steps} steps)"
        except zoo.ZooError as err:
            c, status = None, "missing" if "does not exist" in str(err) else "MODIFIED or unreadable"
        lines.append(f"{name:26s} [{status}]  {e.method} on {e.data}, {e.steps} steps at batch {e.batch_size}")
        lines.append(f"    {e.purpose}")
        if c is not None:
            t = c["training"]
            lines.append(f"    trained {c['steps']} steps in {t['seconds']:.0f} s on {t['device']} "
                         f"({t.get('gpu') or t.get('cpu')}, {t['threads']} threads); {_headline(c)}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
