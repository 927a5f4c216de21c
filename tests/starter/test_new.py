"""`bext new`: the files the starter writes, and errors that touch nothing."""

from __future__ import annotations

import ast
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bext.cli import main
from bext.config import load_config
from bext.starter import ScaffoldError, create_project, package_name


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def test_list_templates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "--list-templates"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("@bext/starter-django ") and "Django" in line


def test_new_writes_the_starter(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "my-app", "--template", "@bext/starter-django"]) == 0
    root = cwd / "my-app"
    assert f"created {root}" in capsys.readouterr().out
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        ".gitignore", "README.md", "bext.config.toml", "deploy/django-gunicorn.service",
        "deploy/django-uvicorn.service", "manage.py", "my_app/__init__.py", "my_app/asgi.py",
        "my_app/middleware.py", "my_app/settings.py", "my_app/urls.py", "my_app/views.py",
        "my_app/wsgi.py", "requirements.txt", "static/css/site.css", "templates/home.html",
    ]  # fmt: skip
    for py in root.rglob("*.py"):
        ast.parse(py.read_text())  # valid Python, placeholders all filled
    for path in root.rglob("*"):
        if path.is_file() and path.suffix != ".html":
            assert "{{" not in path.read_text(), path
    assert "{{ request.scheme }}" in (root / "templates/home.html").read_text()
    settings = (root / "my_app/settings.py").read_text()
    for needle in ['os.environ.get("DJANGO_SECRET_KEY"', '"DJANGO_DEBUG"', '"DJANGO_ALLOWED_HOSTS"',
                   '"DJANGO_CSRF_TRUSTED_ORIGINS"', 'STATIC_ROOT = BASE_DIR / "staticfiles"',
                   'MEDIA_ROOT = BASE_DIR / "media"',
                   'SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")',
                   "USE_X_FORWARDED_HOST = True", "ManifestStaticFilesStorage",
                   '"my_app.middleware.HealthCheckMiddleware"']:  # fmt: skip
        assert needle in settings
    assert "Django>=5.2,<6" in (root / "requirements.txt").read_text()
    unit = (root / "deploy/django-gunicorn.service").read_text()
    assert f"WorkingDirectory={root}" in unit and "my_app.wsgi" in unit
    assert "my_app.asgi:application" in (root / "deploy/django-uvicorn.service").read_text()
    assert os.access(root / "manage.py", os.X_OK)

    config = load_config(root / "bext.config.toml")
    upstream = next(u for u in config.upstreams if u.name == "django")
    assert upstream.health.enabled and upstream.health.path == "/health"
    raw = tomllib.loads((root / "bext.config.toml").read_text())
    assert [r["pattern"] for r in raw["route_rules"]] == ["/static/**", "/media/**", "/**"]
    assert (
        config.server.app_dir == root
    )  # /static/** and /media/** default to ./staticfiles, ./media
    assert [p.name for p in cwd.iterdir()] == ["my-app"]  # no staging folder left


def test_secret_key_differs_per_project(tmp_path: Path) -> None:
    a, _ = create_project("one", parent=tmp_path)
    b, _ = create_project("two", parent=tmp_path)
    key = [
        line for line in (a / "one/settings.py").read_text().splitlines() if "SECRET_KEY =" in line
    ]
    assert key and key[0] not in (b / "two/settings.py").read_text()


def test_package_names() -> None:
    assert package_name("my-app") == "my_app"
    for bad in ("1app", "my app", "a/b", "", "-x", "class", "django", "../x"):
        with pytest.raises(ScaffoldError):
            package_name(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["new", "my app"], "invalid project name"),
        (["new", "9lives"], "invalid project name"),
        (
            ["new", "ok", "--template", "@bext/starter-rails"],
            "known templates: @bext/starter-django",
        ),
        (["new"], "NAME is required"),
    ],
)
def test_errors_touch_nothing(
    cwd: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(cwd.iterdir()) == []


def test_existing_directory(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "taken").mkdir()
    (cwd / "taken/keep.txt").write_text("mine")
    assert main(["new", "taken"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (cwd / "taken").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in cwd.iterdir()) == ["taken"]
    (cwd / "file").write_text("x")
    assert main(["new", "file"]) == 2
    (cwd / "empty").mkdir()
    assert main(["new", "empty"]) == 0  # an empty folder is fine
    assert (cwd / "empty/manage.py").is_file()
