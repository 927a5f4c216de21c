"""`max_conns` from the Gunicorn a project runs (`bext new`, `bext site autoconfigure`), and
`bext check`'s hints about health probes the app would refuse."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest

from bext.cli import main
from bext.config import load_config
from bext.site import detect
from bext.site.autoconfigure import autoconfigure
from bext.site.probe_hints import host_allowed, probe_hints
from bext.starter import create_project
from tests.site.test_autoconfigure import MANAGE, SETTINGS_PATHLIB, build

DJANGO = {
    "manage.py": MANAGE.format(module="mysite.settings"),
    "mysite/__init__.py": "",
    "mysite/settings.py": SETTINGS_PATHLIB,
    "requirements.txt": "Django>=5.2\ngunicorn\n",
}


def generated(root: Path) -> tuple[dict[str, object], str]:
    """The server table autoconfigure writes, and the whole file."""
    assert autoconfigure(root, out=io.StringIO(), err=io.StringIO()) == 0
    text = (root / "bext.config.toml").read_text()
    load_config(root / "bext.config.toml")
    server: dict[str, object] = tomllib.loads(text)["upstreams"]["django"]["servers"][0]
    return server, text


@pytest.mark.parametrize(("files", "max_conns", "reason"), [
    ({"deploy/app.service": "[Service]\nExecStart=/v/bin/gunicorn --bind 127.0.0.1:8001 \\\n"
      "    --workers 4 --threads 2 mysite.wsgi\n"}, 8, "4 workers x 2 threads (app.service)"),
    ({"Procfile": "web: gunicorn -w3 mysite.wsgi\n"}, 3, "3 workers x 1 threads (Procfile)"),
    ({"gunicorn.conf.py": 'bind = "127.0.0.1:8002"\nthreads = 4\n',
      "Procfile": "web: gunicorn --workers=2 mysite.wsgi\n"}, 8,
     "2 workers x 4 threads (Procfile and gunicorn.conf.py)"),
    ({"Procfile": "web: gunicorn --workers $WEB_CONCURRENCY mysite.wsgi\n"}, None,
     "workers or threads are computed in Procfile"),
    ({"gunicorn.conf.py": "import multiprocessing\nbind = '127.0.0.1:8003'\n"
      "workers = multiprocessing.cpu_count() * 2 + 1\n"}, None, "computed in gunicorn.conf.py"),
    ({"Procfile": "web: gunicorn -k gevent -w 4 mysite.wsgi\n"}, None,
     "gevent workers (asynchronous)"),
    ({"Procfile": "web: gunicorn mysite.wsgi\n"}, None, "worker count is not named"),
    ({"Procfile": "web: uvicorn mysite.asgi:application --workers 4\n"}, None,
     "Uvicorn is asynchronous"),
])  # fmt: skip
def test_autoconfigure_sets_max_conns_from_gunicorns_workers_and_threads(
    tmp_path: Path, files: dict[str, str], max_conns: int | None, reason: str
) -> None:
    build(tmp_path, {**DJANGO, **files})
    server, text = generated(tmp_path)
    assert server.get("max_conns") == max_conns
    assert reason in text  # the header says why, or why not


def test_bext_new_agrees_with_its_own_gunicorn_unit(tmp_path: Path) -> None:
    root, _ = create_project("shop", parent=tmp_path)
    config = load_config(root / "bext.config.toml")
    (server,) = next(u for u in config.upstreams if u.name == "django").servers
    detected = detect(root).app_server  # deploy/django-gunicorn.service: --workers 4 --threads 2
    assert detected is not None and detected.max_conns == server.max_conns == 8
    assert config.upstreams[0].queue == 1000 and config.upstreams[0].queue_timeout == 30.0


def check_project(root: Path, health: str, settings: str | None, rule_host: str = "") -> str:
    """``bext check`` on a config proxying to a Django project in ``root``; its notes."""
    if settings is not None:
        build(root, {**DJANGO, "mysite/settings.py": SETTINGS_PATHLIB + settings})
    host = f'host = "{rule_host}"\n' if rule_host else ""
    (root / "bext.config.toml").write_text(
        '[server]\nport = 3000\napp_dir = "."\n'
        '[upstreams.django]\nservers = ["http://127.0.0.1:8000"]\n'
        f"[upstreams.django.health]\nenabled = true\n{health}\n"
        f'[[route_rules]]\npattern = "/**"\nproxy = "django"\n{host}'
    )
    out = io.StringIO()
    assert main(["check", "-c", str(root / "bext.config.toml")]) == 0
    return out.getvalue()


@pytest.mark.parametrize(("health", "settings", "rule_host", "expected"), [
    # Literal ALLOWED_HOSTS: checked as Django checks it.
    ('path = "/"', 'ALLOWED_HOSTS = ["example.com"]\nDEBUG = False\n', "",
     "Host: localhost, which ALLOWED_HOSTS in settings.py (example.com) does not seem"),
    ('path = "/health"', 'ALLOWED_HOSTS = ["example.com"]\n', "",
     "Host: localhost, which ALLOWED_HOSTS"),
    ('path = "/"\nhost = "example.com"', 'ALLOWED_HOSTS = ["example.com"]\n', "", None),
    ('path = "/"', 'ALLOWED_HOSTS = [".example.com"]\n', "www.example.com", None),
    ('path = "/"', "ALLOWED_HOSTS = []\nDEBUG = True\n", "", None),  # Django allows localhost
    ('path = "/"', "ALLOWED_HOSTS = []\nDEBUG = False\n", "", "ALLOWED_HOSTS in settings.py"),
    # A 400 counts as a pass: nothing to say.
    ('path = "/"\nexpect_status = [200, 499]', 'ALLOWED_HOSTS = ["example.com"]\n', "", None),
    # ALLOWED_HOSTS not a literal (from the environment): only a probe of / gets a softer hint.
    ('path = "/"', 'import os\nALLOWED_HOSTS = os.environ["HOSTS"].split(",")\n', "",
     "Django (ALLOWED_HOSTS) may answer that with 400"),
    ('path = "/health"', 'import os\nALLOWED_HOSTS = os.environ["HOSTS"].split(",")\n', "", None),
    ('path = "/"', 'ALLOWED_HOSTS = ["example.com"]\nif True:\n    ALLOWED_HOSTS = ["*"]\n', "",
     "Django (ALLOWED_HOSTS) may answer"),
    # No Django project at app_dir: the generic hint for / without a host.
    ('path = "/"', None, "", "an app that checks hosts may answer that with 400"),
])  # fmt: skip
def test_check_hints_at_probes_the_app_would_refuse(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    health: str,
    settings: str | None,
    rule_host: str,
    expected: str | None,
) -> None:
    check_project(tmp_path, health, settings, rule_host)
    out = capsys.readouterr().out
    hints = [line for line in out.splitlines() if "upstreams.django.health: hint:" in line]
    if expected is None:
        assert hints == [], out
    else:
        assert len(hints) == 1 and expected in hints[0], out


def test_django_host_matching() -> None:
    assert host_allowed("example.com", [".example.com"])
    assert host_allowed("www.example.com:8443", [".example.com"])
    assert not host_allowed("badexample.com", [".example.com"])
    assert host_allowed("[::1]", ["[::1]"]) and host_allowed("[::1]:80", ["[::1]"])
    assert host_allowed("anything", ["*"]) and not host_allowed("localhost", [])


def test_no_hint_for_the_starter_project(tmp_path: Path) -> None:
    root, _ = create_project("shop", parent=tmp_path)
    assert probe_hints(load_config(root / "bext.config.toml")) == []
