from __future__ import annotations

import pytest
import trustme

from tests.h2.support import PKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    path = tmp_path_factory.mktemp("h2pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return PKI(ca, cert, path)
