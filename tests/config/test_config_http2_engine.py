"""`server.http2.engine`: which library speaks HTTP/2 (issue 18), checked like `http1_engine`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bext.config import Config
from bext.protocol import h2_engine

Problems = Callable[[str], list[str]]
Load = Callable[[str], Config]


def test_default_is_auto(load: Load) -> None:
    assert load("").server.http2.engine == "auto"


@pytest.mark.parametrize("name", ["auto", "nghttp2", "h2"])
def test_each_engine_is_accepted(load: Load, name: str) -> None:
    config = load(f'[server.http2]\nengine = "{name}"\nmax_resets = 7\n')
    assert config.server.http2.engine == name
    assert config.server.http2.max_resets == 7  # the other keys are still read


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"nghttp"', 'expected one of "auto", "nghttp2", "h2", got "nghttp" (did you mean'),
        ('"hyper"', 'expected one of "auto", "nghttp2", "h2", got "hyper"'),
        ("2", "expected a string, got 2"),
    ],
)
def test_bad_engine_is_refused_with_its_key_path(
    problems: Problems, value: str, reason: str
) -> None:
    (problem,) = problems(f"[server.http2]\nengine = {value}\n")
    assert problem.startswith("server.http2.engine: ") and reason in problem


def test_nghttp2_without_ngh2_installed_is_refused(
    problems: Problems, load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h2_engine, "available", lambda name: name != "nghttp2")
    (problem,) = problems('[server.http2]\nengine = "nghttp2"\n')
    assert problem.startswith("server.http2.engine: ") and "ngh2" in problem
    # "auto" falls back to h2 quietly, and "h2" needs nothing more.
    assert load('[server.http2]\nengine = "auto"\n').server.http2.engine == "auto"
    assert load('[server.http2]\nengine = "h2"\n').server.http2.engine == "h2"
