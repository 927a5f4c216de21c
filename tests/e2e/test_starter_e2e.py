"""`bext new` end to end: the starter project under a real Gunicorn, behind `bext run`.

Nothing is installed: Django and Gunicorn come from the test venv. Through bext (plain
HTTP and TLS with trustme certificates) it checks the home page, a Manifest-hashed static
file served by bext with `immutable`, `/health`, that Django sees TLS requests as secure
(X-Forwarded-Proto from bext + the starter's SECURE_PROXY_SSL_HEADER), and an admin login
with CSRF over HTTPS.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import tomli_w
import trustme

from tests.support.django_app import django_env
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess

BIN = Path(sys.executable).parent
PASSWORD = "starter-e2e-Secret-42"


def _manage(project: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=project, env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip


def _start_gunicorn(project: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = open(project / "gunicorn.log", "wb")  # noqa: SIM115 - closed once Popen has it
    try:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--threads", "2", "e2e_site.wsgi"],
            cwd=project, env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((project / "gunicorn.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    _stop(proc)
    raise RuntimeError("gunicorn did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_starter_behind_bext(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "bext", "new", "e2e-site"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=30)  # fmt: skip
    project = tmp_path / "e2e-site"
    env = django_env()
    env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    _manage(project, env, "migrate", "--noinput")
    _manage(project, env, "collectstatic", "--noinput")
    _manage(project, env, "createsuperuser", "--noinput", "--username", "admin",
            "--email", "admin@example.com")  # fmt: skip
    hashed = [p.name for p in (project / "staticfiles/css").iterdir()
              if re.fullmatch(r"site\.[0-9a-f]{12}\.css", p.name)]  # fmt: skip
    assert len(hashed) == 1

    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "site.pem"))
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)

    # The project's own bext.config.toml, moved to ephemeral ports and given TLS.
    config = tomllib.loads((project / "bext.config.toml").read_text())
    port = free_port()
    config["server"].update(port=0, host="127.0.0.1", workers=1)
    config["server"]["tls"] = {"port": 0, "cert": str(tmp_path / "site.pem"),
                               "key": str(tmp_path / "site.pem")}  # fmt: skip
    config["upstreams"]["django"]["servers"] = [{"url": f"http://127.0.0.1:{port}"}]

    gunicorn = _start_gunicorn(project, env, port)
    bext = BextProcess(project, tomli_w.dumps(config), name="bext.e2e.toml")
    try:
        bext.start()
        assert bext.tls_url
        with httpx.Client(base_url=bext.base_url, timeout=10) as client:
            home = client.get("/")
            assert home.status_code == 200 and "<h1>e2e-site</h1>" in home.text
            assert 'id="scheme">http<' in home.text
            css_url = re.search(r'href="(/static/css/site\.[0-9a-f]{12}\.css)"', home.text)
            assert css_url is not None and css_url.group(1) == f"/static/css/{hashed[0]}"
            css = client.get(css_url.group(1))
            assert css.status_code == 200 and "font-family" in css.text
            assert "immutable" in css.headers["cache-control"]
            assert css.headers["content-type"].startswith("text/css")
            health = client.get("/health")
            assert health.status_code == 200 and health.json() == {"status": "ok"}

        with httpx.Client(base_url=bext.tls_url, verify=client_ssl, timeout=10,
                          headers={"Origin": bext.tls_url}) as client:  # fmt: skip
            home = client.get("/")
            assert 'id="scheme">https<' in home.text and 'id="secure">yes<' in home.text
            login = client.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
            assert token is not None
            r = client.post("/admin/login/?next=/admin/", data={
                "csrfmiddlewaretoken": token.group(1), "username": "admin",
                "password": PASSWORD, "next": "/admin/",
            })  # fmt: skip
            assert r.status_code == 302 and r.headers["location"] == "/admin/", r.text[:500]
            assert "Site administration" in client.get("/admin/").text
    finally:
        bext.stop()
        _stop(gunicorn)
