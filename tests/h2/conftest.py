"""Every HTTP/2 test runs once per engine (``server.http2.engine``), so they cannot drift.

In-process servers resolve ``engine = "auto"`` through :data:`bext.protocol.h2_engine.AUTO`,
which the autouse ``h2_engine`` fixture sets; servers started as ``bext run`` subprocesses
get the engine in their config instead (``tests/h2/test_h2_config.py``).
"""

from __future__ import annotations

import pytest
import trustme

from bext.protocol import h2_engine
from tests.h2.support import PKI

ENGINES = ("nghttp2", "h2")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    path = tmp_path_factory.mktemp("h2pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return PKI(ca, cert, path)


@pytest.fixture(params=ENGINES, autouse=True)
def h2_engine_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine this run of the test uses (``auto`` resolves to it)."""
    name: str = request.param
    monkeypatch.setattr(h2_engine, "AUTO", name)
    return name
