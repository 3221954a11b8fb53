"""Start ``sslkit explore`` as a user would, read the URL it prints, and stop it with Ctrl-C (SIGINT).

The command runs in its own process group with its PID recorded; `stop()` sends it SIGINT (the
command then stops Voilà, which shuts its kernel down) and checks that it exits with 130 and leaves
no process behind; whatever is still alive after that is killed by PID (also when a test fails).
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from discover import REPO

URL_RE = re.compile(r"^\s+(http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{48}))$")


@dataclass
class ExploreApp:
    proc: subprocess.Popen
    url: str
    port: int
    token: str
    stdout: list[str]
    log_path: Path
    descendants: set[int] = field(default_factory=set)
    kernel_ids: set[str] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, token: bool = True) -> int:
        """HTTP status of a request to the app (with the token in the header unless ``token=False``)."""
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    def remember_children(self) -> None:
        try:
            self.descendants |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            pass

    def shutdown_kernels(self) -> None:
        """DELETE the page's kernel through the REST API (as the notebook tests do) and check it is gone."""
        for kid in sorted(self.kernel_ids):
            status = self.api("DELETE", f"/api/kernels/{kid}")
            assert status in (204, 404), f"DELETE /api/kernels/{kid} answered {status}"
            assert self.api("GET", f"/api/kernels/{kid}") == 404, f"kernel {kid} still running"
        self.kernel_ids.clear()

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C (SIGINT to the command's PID); return its exit status. Kills leftovers by PID."""
        self.remember_children()
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return -1
        finally:
            for pid in [self.proc.pid, *self.descendants]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.proc.wait()

    def alive(self) -> list[int]:
        return [p for p in self.descendants if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def start_explore(args: list[str], log_path: Path, env_extra: dict | None = None,
                  timeout: float = 300.0) -> ExploreApp:
    """Run ``python -m sslkit explore ARGS`` and wait for the URL line it prints."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **(env_extra or {}))
    env.pop("SSLKIT_QUICK", None)  # the app trains nothing; keep the environment a user has
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "sslkit", "explore", *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                            start_new_session=True)
    log.close()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:  # stdout closed: the command ended
                    break
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [d.decode() for d in done]
                for line in lines:
                    m = URL_RE.match(line)
                    if m:
                        return ExploreApp(proc, m.group(1), int(m.group(2)), m.group(3), lines, log_path)
            elif proc.poll() is not None:
                break
        raise AssertionError(f"no URL from `sslkit explore {' '.join(args)}` (exit {proc.poll()}); "
                             f"stdout: {lines}\nstderr: {log_path.read_text(errors='replace')[-3000:]}")
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
