"""The demo Django project under a real Gunicorn or Uvicorn, for end-to-end tests.

The demo is built by demo/build.py, as ``make demo`` builds it: the starter template's
output (``bext new demosite``) plus the example app in demo/app.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from demo.build import build_demo

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class DemoSite:
    root: Path
    """The built project: manage.py, demosite/, shop/, staticfiles/, db.sqlite3."""
    env: dict[str, str]
    """The environment to run its app servers and manage.py with."""


def django_env(*also_drop: str) -> dict[str, str]:
    """This process's environment without ``DJANGO_*`` (and ``also_drop`` prefixes), so a
    developer's DJANGO_SETTINGS_MODULE never leaks into the project under test."""
    drop = ("DJANGO_", *also_drop)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def prepare(parent: Path) -> DemoSite:
    """Build the demo into ``parent``, then migrate + collectstatic + admin user."""
    root = build_demo(parent)
    env = django_env()
    env["DJANGO_ALLOWED_HOSTS"] = "*"
    for command in (
        ["migrate", "--noinput"],
        ["collectstatic", "--noinput"],
        ["ensure_demo_admin"],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return DemoSite(root, env)


class AppServer:
    def __init__(
        self,
        kind: str,
        site: DemoSite,
        bind: str,
        workers: int = 2,
        access_log: Path | None = None,
    ) -> None:
        """``access_log`` (Gunicorn only): where Gunicorn writes one line per request it
        answered, so a test can count what reached the app."""
        self.kind = kind
        self.bind = bind
        if kind == "gunicorn":
            argv = [str(BIN / "gunicorn"), "--bind", bind, "--workers", str(workers),
                    "--timeout", "60", "demosite.wsgi"]  # fmt: skip
            if access_log is not None:
                argv[1:1] = ["--access-logfile", str(access_log)]
        else:
            host, port = bind.rsplit(":", 1)
            argv = [str(BIN / "uvicorn"), "shop.asgi:application", "--host", host,
                    "--port", port, "--workers", str(workers)]  # fmt: skip
        if bind.startswith("unix:"):
            argv = [str(BIN / "gunicorn"), "--bind", bind, "--workers", str(workers),
                    "demosite.wsgi"]  # fmt: skip
        self.log_path = site.root / f"{kind}-{os.getpid()}-{time.time_ns()}.log"
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=site.root,
                env=site.env,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
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


def start_gunicorn(
    site: DemoSite, port: int, workers: int = 1, access_log: Path | None = None
) -> AppServer:
    """A Gunicorn serving the demo on 127.0.0.1:``port``, answering ``/health``."""
    app = AppServer("gunicorn", site, f"127.0.0.1:{port}", workers=workers, access_log=access_log)
    try:
        app.wait_ready(f"http://127.0.0.1:{port}/health")
    except BaseException:
        app.stop()
        raise
    return app


def django_upstream(app_port: int) -> str:
    """The ``[upstreams.django]`` table for the demo's app server on 127.0.0.1:``app_port``."""
    return f"""
[upstreams.django]
keepalive = 16
connect_timeout_ms = 2000
read_timeout_ms = 30000
[[upstreams.django.servers]]
url = "http://127.0.0.1:{app_port}"
"""
