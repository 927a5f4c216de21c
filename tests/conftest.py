from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import BextProcess

ENGINES = ("httptools", "h11")


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
