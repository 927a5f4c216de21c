"""The demo Django project (demo/) under a real Gunicorn or Uvicorn, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

DEMO = Path(__file__).resolve().parents[2] / "demo"
BIN = Path(sys.executable).parent


def prepare(db_path: Path) -> dict[str, str]:
    """migrate + collectstatic + admin user; returns the environment to run the app with."""
    env = {**os.environ, "DEMO_DB_PATH": str(db_path), "DJANGO_ALLOWED_HOSTS": "*"}
    for command in (
        ["migrate", "--noinput"],
        ["collectstatic", "--noinput"],
        ["ensure_demo_admin"],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=DEMO,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return env


class AppServer:
    def __init__(self, kind: str, env: dict[str, str], bind: str, workers: int = 2) -> None:
        self.kind = kind
        self.bind = bind
        if kind == "gunicorn":
            argv = [str(BIN / "gunicorn"), "--bind", bind, "--workers", str(workers),
                    "--timeout", "60", "demosite.wsgi"]  # fmt: skip
        else:
            host, port = bind.rsplit(":", 1)
            argv = [str(BIN / "uvicorn"), "demosite.asgi:application", "--host", host,
                    "--port", port, "--workers", str(workers)]  # fmt: skip
        if bind.startswith("unix:"):
            argv = [str(BIN / "gunicorn"), "--bind", bind, "--workers", str(workers),
                    "demosite.wsgi"]  # fmt: skip
        log_dir = DEMO.parent / ".pytest_cache"
        log_dir.mkdir(exist_ok=True)
        self.log_path = log_dir / f"{kind}-{os.getpid()}-{time.time_ns()}.log"
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.proc = subprocess.Popen(
                argv, cwd=DEMO, env=env, stdout=log_fd, stderr=log_fd, start_new_session=True
            )
        finally:
            os.close(log_fd)

    def wait_ready(self, url: str, transport: httpx.HTTPTransport | None = None) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}")
            try:
                with httpx.Client(transport=transport) as client:
                    if client.get(url, timeout=1).status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_gunicorn(env: dict[str, str], port: int, workers: int = 1) -> AppServer:
    """A Gunicorn serving the demo on 127.0.0.1:``port``, answering ``/health``."""
    app = AppServer("gunicorn", env, f"127.0.0.1:{port}", workers=workers)
    try:
        app.wait_ready(f"http://127.0.0.1:{port}/health")
    except BaseException:
        app.stop()
        raise
    return app
