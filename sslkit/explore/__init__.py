"""``sslkit explore``: the feature explorer of a trained model as a web app (Voilà), on this machine.

    sslkit explore --model simclr_shapes                 a zoo model on its own data (test split)
    sslkit explore --checkpoint runs/byol/checkpoint.pt  a run of `sslkit train`
    sslkit explore --model dino_shapes --port 8866       attention maps too (a ViT)

The app shows the embedding map (PCA / t-SNE, coloured by the label or a factor), the nearest
neighbours of a chosen image and, for a ViT backbone, its CLS attention - the explorers of
:mod:`sslkit.widgets` in the notebook ``explorer.ipynb`` shipped with the package.

It listens on 127.0.0.1 only, with a fresh random token in the printed URL; Ctrl-C stops it (the
kernel shut down, the temporary folder removed) and exits with status 130, like ``sslkit train``.

Modules: :mod:`~sslkit.explore.source` (which model on which images, checked),
:mod:`~sslkit.explore.server` (the Voilà process), :mod:`~sslkit.explore.app` (the kernel's side).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from sslkit.explore.source import DEFAULT_SAMPLES, Target, resolve  # noqa: F401


class _Terminated(Exception):
    """SIGTERM while serving: stop like Ctrl-C, exit 143 (128 + SIGTERM)."""


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out=None) -> int:
    """``sslkit explore``: check the request, start Voilà, print the URL, serve until Ctrl-C."""
    from sslkit.explore import server as srv
    out = out or sys.stdout
    if args.port is not None and not srv.port_free(args.port):
        parser.error(f"--port {args.port} is already in use on {srv.HOST} (another server?); choose another "
                     f"port, or leave --port out to use a free one")
    if not srv.voila_available():
        print(f"{parser.prog}: error: the explorer app needs Voilà, which is not installed; install it with "
              f"`{sys.executable} -m pip install 'voila>=0.5'` (or `pip install -e '.[dev]'`)", file=sys.stderr)
        return 1
    notes: list[str] = []
    target = resolve(model=args.model, checkpoint=args.checkpoint, zoo_dir=args.zoo_dir, data=args.data,
                     options=dict(args.data_option) or None, split=args.split, root=args.root,
                     samples=args.samples, device=args.device, notes=notes)
    for note in notes:
        print(f"{parser.prog}: note: {note}", file=sys.stderr)
    port = args.port if args.port is not None else srv.free_port()
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    server = None
    try:
        server = srv.Server(target, port)
        print(f"{parser.prog}: starting Voilà for {target.describe()} ...", file=out, flush=True)
        server.wait_ready()
        print(f"Open this URL in a browser on this machine (the token in it is the password):\n"
              f"    {server.url}\nCtrl-C stops the server.", file=out, flush=True)
        server.proc.wait()
        print(f"{parser.prog}: error: Voilà stopped on its own (exit status {server.proc.returncode}); its "
              f"last messages:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except RuntimeError as err:  # Voilà did not come up as required
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: stopping (Ctrl-C)", file=sys.stderr, flush=True)
        return 130
    except _Terminated:
        print(f"{parser.prog}: stopping (SIGTERM)", file=sys.stderr, flush=True)
        return 143
    finally:
        if main_thread:  # a second Ctrl-C must not cut the shutdown short
            interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, interrupt)
                signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum, frame):
    raise _Terminated()


__all__ = ["run", "resolve", "Target"]
