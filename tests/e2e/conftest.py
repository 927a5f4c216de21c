from __future__ import annotations

import pytest

from tests.support.django_app import DemoSite, prepare


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    """The demo project built, migrated and collected in a temp folder, once per run."""
    return prepare(tmp_path_factory.mktemp("demo"))
