"""Start JupyterLab / Voila servers for the browser tests and stop them by PID.

Every server runs in its own process group (start_new_session) with private Jupyter config,
data, runtime and settings folders under a temp dir, listens on 127.0.0.1 on a free port, and
keeps token authentication on (a random token per server). `stop()` shuts kernels down through
the REST API first, then SIGTERMs the recorded PID, and finally SIGKILLs the process group and any
descendant it recorded (kernels run in their own sessions, so a group kill alone misses them).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # a dependency of ipykernel, so always in the venv

VENV_BIN = Path(sys.executable).parent
NO_KERNEL = "00000000-0000-0000-0000-000000000000"
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"

# JupyterLab settings that make a test run deterministic and offline.
LAB_SETTINGS = {
    # 'none' keeps every cell in the DOM, so off-screen widgets render and can be checked.
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    # No "get Jupyter news?" toast and no update check (both would try the internet).
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running server: its PID (= process group id), URL and token."""
    name: str
    proc: subprocess.Popen
    port: int
    token: str
    log_path: Path
    descendants: set[int] = field(default_factory=set)
    kernel_ids: set[str] = field(default_factory=set)  # known kernels (Voila lists none)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, timeout: float = 30.0):
        """Call the REST API with the token header; return parsed JSON (or None for 204)."""
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def remember_children(self) -> None:
        """Record every descendant (kernels included) so stop() can kill them by PID."""
        try:
            self.descendants |= {p.pid for p in psutil.Process(self.pid).children(recursive=True)}
        except psutil.Error:
            pass

    def wait_ready(self, path: str, timeout: float, ok_status: int = 200) -> None:
        """Poll `path` (with the token) until it answers `ok_status`; fail early if the process died."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", path, timeout=5)
                if ok_status == 200:
                    return
            except urllib.error.HTTPError as err:
                if err.code == ok_status:
                    return
                last = repr(err)
            except (urllib.error.URLError, OSError, ValueError) as err:
                last = repr(err)
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s ({last}):\n{self.log_tail()}")

    def shutdown_kernels(self) -> list[str]:
        """DELETE every session and kernel through the API; return the kernel ids shut down.

        JupyterLab lists its sessions and kernels; Voila lists none, so its kernels are the ids
        recorded in `kernel_ids` (read from the Voila page).
        """
        self.remember_children()
        ids = []
        if self.name == "jupyterlab":
            for sess in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{sess['id']}")  # also shuts its kernel down
                ids.append(sess["kernel"]["id"])
            self.kernel_ids |= {k["id"] for k in self.api("GET", "/api/kernels")}
        for kid in sorted(self.kernel_ids - set(ids)):
            try:
                self.api("DELETE", f"/api/kernels/{kid}")
                ids.append(kid)
            except urllib.error.HTTPError as err:
                if err.code != 404:  # 404: already gone (e.g. the page unloaded)
                    raise
        self.kernel_ids.clear()
        return ids

    def kernel_alive(self, kid: str) -> bool:
        try:
            self.api("GET", f"/api/kernels/{kid}")
            return True
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            raise

    def stop(self, grace: float = 15.0) -> None:
        """Stop by the recorded PID: SIGTERM, wait, then SIGKILL the group and descendants."""
        self.remember_children()
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)  # jupyter_server shuts its kernels down on TERM
                self.proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # whatever is left in the server's group
        except (ProcessLookupError, PermissionError):
            pass
        for pid in self.descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def stop_server(server: Server) -> None:
    """Shut the kernels down through the API, then stop the server by its PID."""
    try:
        server.shutdown_kernels()
    finally:
        server.stop()


def jupyter_env(home: Path, disable_widgets: bool = False, extra: dict | None = None) -> dict:
    """Environment with private Jupyter folders under `home` (optionally widgets front end off)."""
    cfg = home / "config"
    (cfg / "labconfig").mkdir(parents=True, exist_ok=True)
    (cfg / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(LAB_SETTINGS))
    if disable_widgets:
        # Same effect as `jupyter labextension disable --level=user <manager>` with
        # JUPYTER_CONFIG_DIR pointing here: the widget renderer is never loaded.
        (cfg / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {WIDGET_MANAGER: True}}))
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
    env.pop("JUPYTER_PATH", None)
    env.update(extra or {})
    return env


def _spawn(name: str, cmd: list[str], env: dict, cwd: Path, port: int, token: str,
           log_path: Path) -> Server:
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()  # the child holds its own descriptor
    return Server(name, proc, port, token, log_path)


def start_lab(root_dir: Path, home: Path, disable_widgets: bool = False,
              env_extra: dict | None = None, timeout: float = 180.0) -> Server:
    """JupyterLab on 127.0.0.1:<free port>, token auth on, serving `root_dir`."""
    port, token = free_port(), secrets.token_hex(24)
    home.mkdir(parents=True, exist_ok=True)
    cmd = [str(VENV_BIN / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root_dir}", "--ServerApp.terminals_enabled=False",
           "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: read the notebook model
           f"--LabApp.user_settings_dir={home / 'settings'}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}",
           "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--ServerApp.allow_root=True", "--ServerApp.open_browser=False"]
    server = _spawn("jupyterlab", cmd, jupyter_env(home, disable_widgets, env_extra), root_dir,
                    port, token, home / "jupyterlab.log")
    try:
        server.wait_ready("/api/status", timeout)
    except BaseException:
        server.stop()
        raise
    return server


def start_voila(notebook: Path, home: Path, env_extra: dict | None = None,
                timeout: float = 180.0) -> Server:
    """Voila serving one notebook on 127.0.0.1:<free port>, with a token."""
    port, token = free_port(), secrets.token_hex(24)
    home.mkdir(parents=True, exist_ok=True)
    cmd = [str(VENV_BIN / "voila"), notebook.name, f"--port={port}", "--no-browser",
           "--Voila.ip=127.0.0.1", f"--Voila.token={token}",
           "--VoilaConfiguration.show_tracebacks=True"]
    server = _spawn("voila", cmd, jupyter_env(home, extra=env_extra), notebook.parent, port,
                    token, home / "voila.log")
    try:
        # An authenticated handler: 404 for an unknown kernel means up and token accepted
        # (a wrong token gets 403).
        server.wait_ready(f"/api/kernels/{NO_KERNEL}", timeout, ok_status=404)
    except BaseException:
        server.stop()
        raise
    return server
