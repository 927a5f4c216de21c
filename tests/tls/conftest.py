"""Fixtures for the TLS tests. Every test gets its own BEXT_STATE_DIR under tmp_path, so
nothing here can touch the real ~/.local/share/bext or /var/lib/bext."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from bext.config import Config
from bext.config.load import parse_config
from tests.tls.pki import CA, make_ca


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The state directory bext's local CA uses in this test."""
    path = tmp_path / "state"
    monkeypatch.setenv("BEXT_STATE_DIR", str(path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    return path


@pytest.fixture(scope="session")
def ca() -> CA:
    return make_ca()


@pytest.fixture
def parse(tmp_path: Path) -> Callable[[str], Config]:
    """TOML text -> Config through the real loader (relative paths from tmp_path)."""

    def parse_text(text: str) -> Config:
        return parse_config(tomllib.loads(text), base_dir=tmp_path)

    return parse_text
