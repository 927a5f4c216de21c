"""Fixtures for config tests: every config is a real file in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bext.config import Config, ConfigError, load_config


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write TOML text to tmp_path/bext.config.toml and return the path."""

    def write(text: str) -> Path:
        path = tmp_path / "bext.config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def load(write_config: Callable[[str], Path]) -> Callable[[str], Config]:
    """Write TOML text to a file and load it."""

    def load_text(text: str) -> Config:
        return load_config(write_config(text))

    return load_text


@pytest.fixture
def problems(write_config: Callable[[str], Path]) -> Callable[[str], list[str]]:
    """Write TOML text, expect it to be refused, and return the problems."""

    def refuse(text: str) -> list[str]:
        with pytest.raises(ConfigError) as info:
            load_config(write_config(text))
        return info.value.problems

    return refuse
