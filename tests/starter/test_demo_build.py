"""demo/build.py: the demo is the starter's output plus demo/app, and cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import demo.build
from bext.config import load_config
from bext.starter.scaffold import create_project
from demo.build import DemoBuildError, Ports, build_demo

SECRET = re.compile(r"django-insecure-[A-Za-z0-9_-]+")


def files(root: Path) -> dict[str, str]:
    """Relative path -> text, with the two per-project values (secret key, folder) masked."""
    return {
        str(p.relative_to(root)): SECRET.sub("SECRET", p.read_text()).replace(str(root), "ROOT")
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_every_starter_file_reaches_the_demo_unchanged(tmp_path: Path) -> None:
    site = build_demo(tmp_path / "demo")
    (tmp_path / "starter").mkdir()
    starter, _ = create_project("demosite", parent=tmp_path / "starter")
    ours, theirs = files(site), files(starter)
    assert theirs, "the starter rendered nothing"
    for name, text in theirs.items():
        assert ours.get(name) == text, f"{name} differs from the starter's"
    added = sorted(set(ours) - set(theirs))
    assert ".demo-build" in added and "demosite/settings_local.py" in added
    assert "shop/views.py" in added and "shop/asgi.py" in added
    assert all(n == ".demo-build" or n.startswith(("shop/", "demosite/")) for n in added), added


def test_the_demo_config_is_the_starters_and_passes_check(tmp_path: Path) -> None:
    site = build_demo(tmp_path, Ports(port=4000, tls_port=4443, app_port=9000))
    config = load_config(site / "bext.config.toml")
    assert config.server.port == 4000
    assert config.server.host == ("127.0.0.1",)
    tls = config.server.tls
    assert tls is not None and tls.port == 4443 and tls.internal and tls.http3
    upstream = next(u for u in config.upstreams if u.name == "django")
    assert [s.url for s in upstream.servers] == ["http://127.0.0.1:9000"]
    assert upstream.health.path == "/health"
    # The starter's settings pick the demo's additions up.
    settings = (site / "demosite/settings.py").read_text()
    assert "from .settings_local import *" in settings


def test_the_demo_may_only_add_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app"
    (app / "demosite").mkdir(parents=True)
    (app / "demosite/settings.py").write_text("DEBUG = True\n")
    monkeypatch.setattr(demo.build, "APP", app)
    with pytest.raises(DemoBuildError, match=r"demo/app/demosite/settings\.py would replace"):
        build_demo(tmp_path / "out")


def test_a_starter_config_change_is_caught(tmp_path: Path) -> None:
    config = tmp_path / "bext.config.toml"
    config.write_text('[server]\nport = 3000\n[server.tls]\nport = 8443\nurl = "x"\n')
    with pytest.raises(DemoBuildError, match="has 0 lines 'port = 3443', expected 1"):
        demo.build._set_ports(config, Ports())


def test_rebuild_replaces_only_a_previous_build(tmp_path: Path) -> None:
    site = build_demo(tmp_path)
    (site / "db.sqlite3").write_bytes(b"old")
    assert build_demo(tmp_path) == site and not (site / "db.sqlite3").exists()

    other = tmp_path / "elsewhere"
    (other / "demosite").mkdir(parents=True)
    (other / "demosite/mine.txt").write_text("keep")
    with pytest.raises(DemoBuildError, match=r"was not built by demo/build\.py"):
        build_demo(other)
    assert [p.name for p in (other / "demosite").iterdir()] == ["mine.txt"]


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.build.main(["--dest", str(tmp_path), "--port", "3100"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "demosite")
    (tmp_path / "demosite" / ".demo-build").unlink()
    assert demo.build.main(["--dest", str(tmp_path)]) == 1
    assert "was not built by demo/build.py" in capsys.readouterr().err
