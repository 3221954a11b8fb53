"""Serve the explorer app with Voilà on 127.0.0.1, token authentication on, and stop it cleanly.

Everything the server needs lives in a private temporary folder (mode 0700), removed on exit::

    app/explorer.ipynb     the app notebook (the only file Voilà serves: no other file is allowed)
    target.json            the resolved Target (which model, which images) the kernel reads
    voila.log              what Voilà and the kernel print (the terminal shows only the URL; the
                           page shows a cell's error; the log's end is printed if Voilà stops early)
    token                  the random token (mode 0600; Voilà reads it through $JUPYTER_TOKEN_FILE,
                           so it never appears on a command line other users can list)
    jupyter/               private Jupyter config and runtime folders, and a kernel spec that runs
                           this very Python with this very sslkit

Before printing the URL the server is asked twice: with the token it must answer, without it it
must refuse (HTTP 403) - so a Jupyter configuration that turns authentication off is caught.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sslkit.explore.source import ENV, Target

HOST = "127.0.0.1"     # loopback only: nobody else on the network can reach the app
KERNEL = "sslkit-explore"
NO_KERNEL = "00000000-0000-0000-0000-000000000000"  # an id no kernel has: 404 with the token, 403 without
START_TIMEOUT_S = 180.0  # Voilà imports jupyter_server and friends: seconds on a busy 2-core machine
STOP_GRACE_S = 15.0      # Voilà shuts its kernel down on SIGTERM; after this it is killed


def new_token() -> str:
    """48 hex digits from the OS's CSPRNG (what Jupyter itself generates)."""
    return secrets.token_hex(24)


def port_free(port: int) -> bool:
    """Can a server listen on HOST:port? (Bound the way tornado binds, with SO_REUSEADDR.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if os.name == "posix":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def url(port: int, token: str) -> str:
    return f"http://{HOST}:{port}/?token={token}"


def voila_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("voila") is not None


@dataclass
class AppDir:
    """The private folder of one app (see the module docstring)."""
    path: Path

    @property
    def notebook(self) -> Path:
        return self.path / "app" / "explorer.ipynb"

    @classmethod
    def create(cls, target: Target, token: str) -> AppDir:
        d = cls(Path(tempfile.mkdtemp(prefix="sslkit-explore-")))  # mode 0700
        try:
            (d.path / "app").mkdir()
            nb = json.loads(resources.files("sslkit.explore").joinpath("explorer.ipynb").read_text("utf-8"))
            nb["metadata"]["kernelspec"] = {"name": KERNEL, "display_name": "sslkit explore", "language": "python"}
            d.notebook.write_text(json.dumps(nb, indent=1), encoding="utf-8")
            target.save(d.path / "target.json")
            fd = os.open(d.path / "token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)
            spec = d.path / "jupyter" / "data" / "kernels" / KERNEL
            spec.mkdir(parents=True)
            # the kernel runs this Python and imports this sslkit, even from a checkout that is not installed
            package_parent = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
            (spec / "kernel.json").write_text(json.dumps({
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "sslkit explore", "language": "python", "env": {"PYTHONPATH": path}}))
            for sub in ("config", "runtime"):
                (d.path / "jupyter" / sub).mkdir()
        except BaseException:
            shutil.rmtree(d.path, ignore_errors=True)
            raise
        return d

    def env(self) -> dict[str, str]:
        """Voilà's environment: the token file, private Jupyter folders, our kernel spec first."""
        env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE")}
        jupyter = self.path / "jupyter"
        env.update(JUPYTER_TOKEN_FILE=str(self.path / "token"), JUPYTER_CONFIG_DIR=str(jupyter / "config"),
                   JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), PYTHONUNBUFFERED="1",
                   JUPYTER_PATH=os.pathsep.join(p for p in (str(jupyter / "data"), os.environ.get("JUPYTER_PATH"))
                                                if p),
                   **{ENV: str(self.path / "target.json")})
        return env


def voila_command(notebook: Path, port: int) -> list[str]:
    """The Voilà command line: loopback, this port or none, token required, no files served."""
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
            f"--Voila.ip={HOST}", "--Voila.port_retries=0",  # this port or fail: never another one
            "--Voila.auto_token=True",                         # token on (read from $JUPYTER_TOKEN_FILE)
            "--VoilaConfiguration.file_denylist=.*",           # serve no files beside the app
            "--VoilaConfiguration.show_tracebacks=True",       # a local app for its own user: show errors
            # errors only: the URL line is ours, and every refused request (4xx) is a warning
            "--Voila.log_level=ERROR"]


class Server:
    """A running Voilà process (its own process group, so Ctrl-C reaches only ``sslkit explore``)."""

    def __init__(self, target: Target, port: int, token: str | None = None) -> None:
        self.port, self.token = port, token or new_token()
        self.dir = AppDir.create(target, self.token)
        try:
            with open(self.dir.path / "voila.log", "wb") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(voila_command(self.dir.notebook, port), cwd=self.dir.notebook.parent,
                                             env=self.dir.env(), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            shutil.rmtree(self.dir.path, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return url(self.port, self.token)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.dir.path / "voila.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def status(self, token: str | None) -> int:
        """HTTP status of an authenticated API path (404: up and the token accepted; 403: refused)."""
        req = urllib.request.Request(f"http://{HOST}:{self.port}/api/kernels/{NO_KERNEL}",
                                     headers={"Authorization": f"token {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once Voilà accepts the token and refuses requests without it; RuntimeError otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Voilà stopped (exit status {self.proc.returncode}) before it was ready; "
                                   f"its last messages:\n{self.log_tail()}")
            try:
                code = self.status(self.token)
            except OSError:  # not listening yet
                time.sleep(0.3)
                continue
            if code != 404:
                raise RuntimeError(f"Voilà answered HTTP {code} to the token it was given")
            if self.status(None) != 403:
                raise RuntimeError("Voilà serves requests without the token (authentication is off in a "
                                   "Jupyter configuration file?); refusing to go on")
            return
        raise RuntimeError(f"Voilà did not answer on {HOST}:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM (Voilà shuts its kernel down), then SIGKILL of what is left; remove the folder."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in Voilà's process group
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        finally:
            shutil.rmtree(self.dir.path, ignore_errors=True)
