from __future__ import annotations

import pytest

from tests.support.inproc_h3 import H3PKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> H3PKI:
    return make_pki(tmp_path_factory.mktemp("h3pki"))
