from __future__ import annotations

import pytest

from tests.support.django_app import prepare


@pytest.fixture(scope="session")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The demo project migrated (into a temp database) and collected, once per run."""
    return prepare(tmp_path_factory.mktemp("db") / "db.sqlite3")
