"""`make demo` end to end: scripts/demo.sh builds the demo, starts Gunicorn and bext, and
stops both on SIGTERM.

It runs the script itself (on ephemeral ports, building into a temp folder, bext's local CA
in a temp state directory) and checks, through bext: the demo's page and its
Manifest-hashed stylesheet, `/health`, and Django seeing HTTPS over HTTP/2 with the local
CA's certificate. Then SIGTERM: the script exits and leaves no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.django_app import django_env
from tests.support.fake_upstream import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"

pytestmark = pytest.mark.skipif(
    Path(sys.prefix).resolve() != VENV.resolve(),
    reason="scripts/demo.sh runs in the repository's .venv (make test uses it)",
)


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    tls_port: int
    env: dict[str, str]
    build: Path


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port, tls_port, app_port = free_port(), free_port(), free_port()
    env = django_env("DEMO_")
    env.update(
        DEMO_PORT=str(port),
        DEMO_TLS_PORT=str(tls_port),
        DEMO_APP_PORT=str(app_port),
        DEMO_BUILD_DIR=str(tmp_path / "build"),
        BEXT_STATE_DIR=str(tmp_path / "state"),
    )
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts/demo.sh")],
            cwd=tmp_path, env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "bext demo is up" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"demo.sh did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Demo(proc, log, port, tls_port, env, tmp_path / "build")
    finally:
        for child in _session_processes(proc.pid):
            child.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_make_demo_serves_the_built_starter_and_stops_cleanly(demo: Demo) -> None:
    site = demo.build / "demosite"
    assert (site / ".demo-build").is_file() and (site / "shop").is_dir()
    base = f"http://127.0.0.1:{demo.port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["server"].startswith("bext")
        assert "bext demo" in page.text
        css = re.search(r'href="(/static/shop/site\.[0-9a-f]{12}\.css)"', page.text)
        assert css is not None, page.text[:800]
        r = client.get(css.group(1))
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        assert client.get("/health").json() == {"status": "ok"}

    ca = subprocess.run(
        [str(VENV / "bin/bext"), "cert", "--path"],
        env=demo.env, capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(verify=context, http2=True, timeout=10) as client:
        r = client.get(f"https://localhost:{demo.tls_port}/whoami")
        assert r.http_version == "HTTP/2"
        who = r.json()
        assert who["is_secure"] is True and who["scheme"] == "https"

    children = [p.pid for p in _session_processes(demo.proc.pid) if p.pid != demo.proc.pid]
    assert len(children) >= 2  # the app server and bext, with their workers
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(40) == 143, demo.log.read_text()[-2000:]
    deadline = time.monotonic() + 10
    while _session_processes(demo.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(demo.proc.pid) == [], demo.log.read_text()[-2000:]
    text = demo.log.read_text()
    assert "stopping bext" in text and "stopping gunicorn" in text
