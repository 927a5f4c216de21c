"""The pieces autoconfigure is made of: dependency files, binds, the settings reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from bext.site.appserver import bind_to_url, parse_command
from bext.site.catalog import CatalogError, parse_catalog
from bext.site.deps import parse_pipfile, parse_pyproject, parse_requirements
from bext.site.django_settings import read_settings


def test_requirements_names() -> None:
    text = "Django[argon2]>=5.2 ; python_version>'3'\n# c\n-e .\nuvicorn[standard]\ndjango_rest.framework\n"
    assert parse_requirements(text) == {"django", "uvicorn", "django-rest-framework"}


def test_pyproject_and_pipfile() -> None:
    assert parse_pyproject('[project]\ndependencies = ["Flask>=3"]\n'
                           '[tool.poetry.dependencies]\npython = "^3.12"\ngunicorn = "*"\n') == {
        "flask", "gunicorn"}  # fmt: skip
    assert parse_pipfile('[packages]\nFastAPI = "*"\n[dev-packages]\npytest = "*"\n') == {"fastapi"}


@pytest.mark.parametrize(("bind", "url"), [
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("0.0.0.0:80", "http://127.0.0.1:80"),
    (":9000", "http://127.0.0.1:9000"),
    ("[::]:8000", "http://[::1]:8000"),
    ("unix:/run/g.sock", "unix:/run/g.sock"),
    ("localhost:99999", None),
])  # fmt: skip
def test_bind_to_url(bind: str, url: str | None) -> None:
    assert bind_to_url(bind) == url


def test_parse_command() -> None:
    assert parse_command("gunicorn app.wsgi --bind=127.0.0.1:8001") == (
        "gunicorn",
        "http://127.0.0.1:8001",
    )
    assert parse_command("python -m uvicorn main:app --uds /run/u.sock") == (
        "uvicorn",
        "unix:/run/u.sock",
    )
    assert parse_command("gunicorn app.wsgi -b 0.0.0.0:$PORT") == ("gunicorn", None)
    assert parse_command("python manage.py runserver") == (None, None)


def test_settings_never_executed(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text(
        'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "s.settings")'
    )
    (tmp_path / "s").mkdir()
    marker = tmp_path / "executed"
    (tmp_path / "s/settings.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nSTATIC_ROOT = compute()\nSTATIC_URL = '/s/'\n"
    )
    result = read_settings(tmp_path)
    assert not marker.exists()
    assert result.values == {"STATIC_URL": "/s/"}
    assert any("STATIC_ROOT" in note for note in result.notes)


def test_catalog_validation() -> None:
    with pytest.raises(CatalogError, match="kind"):
        parse_catalog('[[framework]]\nname = "x"\nkind = "nope"\n')
    with pytest.raises(CatalogError, match="unknown keys"):
        parse_catalog('[[framework]]\nname = "x"\nkind = "app"\nfilez = []\n')
