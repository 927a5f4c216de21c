"""Every conformance test runs once per HTTP/1.1 engine, so the two cannot drift."""

from __future__ import annotations

import pytest

from tests.protocol.h1support import ENGINE_NAMES, ENGINES, ParserClass


@pytest.fixture(params=ENGINES, ids=[ENGINE_NAMES[cls] for cls in ENGINES])
def parser_cls(request: pytest.FixtureRequest) -> ParserClass:
    cls: ParserClass = request.param
    return cls
