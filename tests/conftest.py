from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import BextProcess

ENGINES = ("httptools", "h11")


@pytest.fixture(scope="session", autouse=True)
def cache_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where a config without ``[cache] path`` keeps its store, for everything the suite
    runs (pipelines built in process, ``bext`` subprocesses): a temporary directory, never
    ``/var/cache/bext`` or ``~/.cache/bext`` (the package test checks the former is absent
    before it installs)."""
    previous = os.environ.get("CACHE_DIRECTORY")
    os.environ["CACHE_DIRECTORY"] = str(tmp_path_factory.mktemp("cache-directory"))
    yield
    if previous is None:
        del os.environ["CACHE_DIRECTORY"]
    else:
        os.environ["CACHE_DIRECTORY"] = previous


@pytest.fixture
def start_bext(tmp_path: Path) -> Iterator[Callable[..., BextProcess]]:
    """Start real ``bext run`` masters; every one is stopped when the test ends."""
    started: list[BextProcess] = []

    def start(config_text: str, name: str = "bext.config.toml") -> BextProcess:
        workdir = tmp_path / f"bext{len(started)}"
        workdir.mkdir()
        server = BextProcess(workdir, config_text, name)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
