"""Make sure Debian's `chromium` is installed; install it with apt-get when it is missing.

The browser tests never download a browser of their own (`playwright install` needs network
access we do not have): they drive the distribution's Chromium through Playwright's
`executable_path`. Run by hand with `.venv/bin/python tests/browser/ensure_chromium.py`; the
browser tests' conftest calls `ensure_chromium()` too.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = os.environ.get("SSLKIT_CHROMIUM", "/usr/bin/chromium")
INSTALL_TIMEOUT_S = 900  # a cold apt-get install of chromium and its libraries takes a few minutes


def _apt(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run([*prefix, "apt-get", *args], stdin=subprocess.DEVNULL, env=env,
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)


def ensure_chromium() -> str:
    """Return the path of a working Chromium, installing the `chromium` package if needed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], stdin=subprocess.DEVNULL,
                                                 capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        raise RuntimeError(f"{CHROMIUM} is missing and this user cannot install it; run "
                           "`sudo apt-get install -y chromium` once (or set SSLKIT_CHROMIUM)")
    print(f"installing chromium with apt-get (missing {CHROMIUM})", file=sys.stderr)
    done = _apt(prefix, "install", "-y", "chromium")
    if done.returncode != 0:  # stale package lists: refresh once and retry
        _apt(prefix, "update")
        done = _apt(prefix, "install", "-y", "chromium")
    if done.returncode != 0 or not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"apt-get install chromium failed (exit {done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return CHROMIUM


if __name__ == "__main__":
    print(ensure_chromium())
