"""A static file that cannot be opened for want of descriptors (EMFILE, ENFILE) is the
server's trouble: 503 with Retry-After, never a 404 that browsers and crawlers keep."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from static_support import body, handle, header, pipeline

import bext.static.representation as representation


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def exhausted(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> Callable[[], None]:
    """Make opening anything under ``root`` fail with ``code``; returns the undo."""
    real_open = os.open

    def fake_open(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if str(path).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(representation.os, "open", fake_open)
    return lambda: monkeypatch.setattr(representation.os, "open", real_open)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE])
def test_no_descriptor_is_503_with_retry_after_then_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    write(tmp_path / "staticfiles" / "a.css", b"body{}\n")
    big = b"x" * (512 * 1024)  # above static.max_cached_file: opened per request
    write(tmp_path / "staticfiles" / "big.bin", big)
    pipe = pipeline(tmp_path)
    assert body(handle(pipe, "/static/big.bin")) == big
    undo = exhausted(monkeypatch, tmp_path, code)
    for target, fields in (("/static/a.css", None), ("/static/big.bin", None),
                           ("/static/big.bin", {"Range": "bytes=0-9"})):  # fmt: skip
        r = handle(pipe, target, fields)
        assert r.status == 503, target
        assert header(r, "retry-after") == "1"
    assert handle(pipe, "/static/missing.css").status == 404  # a missing file is still 404
    undo()
    r = handle(pipe, "/static/a.css")
    assert r.status == 200 and body(r) == b"body{}\n"  # nothing bad was remembered
    assert body(handle(pipe, "/static/big.bin", {"Range": "bytes=0-9"})) == b"x" * 10
