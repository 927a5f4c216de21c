from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.cache.status import CacheStatus, Fwd, append_cache_status


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (CacheStatus(), b"bext"),
        (CacheStatus(hit=True, ttl=376), b"bext;hit;ttl=376"),
        (CacheStatus(hit=True, ttl=-30), b"bext;hit;ttl=-30"),
        (
            CacheStatus(fwd=Fwd.URI_MISS, fwd_status=200, ttl=60, stored=True),
            b"bext;fwd=uri-miss;fwd-status=200;ttl=60;stored",
        ),
        (CacheStatus(fwd=Fwd.VARY_MISS, fwd_status=200), b"bext;fwd=vary-miss;fwd-status=200"),
        (CacheStatus(fwd=Fwd.STALE, fwd_status=304), b"bext;fwd=stale;fwd-status=304"),
        (CacheStatus(fwd=Fwd.REQUEST), b"bext;fwd=request"),
        (CacheStatus(fwd=Fwd.BYPASS), b"bext;fwd=bypass"),
        (CacheStatus(fwd=Fwd.MISS, collapsed=True), b"bext;fwd=miss;collapsed"),
        (CacheStatus(fwd=Fwd.METHOD), b"bext;fwd=method"),
        (CacheStatus(fwd=Fwd.PARTIAL), b"bext;fwd=partial"),
        (CacheStatus(hit=True, detail='said "hi"\\'), b'bext;hit;detail="said \\"hi\\"\\\\"'),
        (CacheStatus(detail="caf\u00e9\n"), b'bext;detail="caf??"'),
        (CacheStatus(ttl=10**20), b"bext;ttl=999999999999999"),
        (CacheStatus(name="edge-2", hit=True), b"edge-2;hit"),
    ],
)
def test_serialise(status: CacheStatus, expected: bytes) -> None:
    assert status.serialise() == expected


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, b"bext;hit"),
        (b"", b"bext;hit"),
        (b"  ", b"bext;hit"),
        (b"OriginCache; fwd=uri-miss", b"OriginCache; fwd=uri-miss, bext;hit"),
        (b"a, b ", b"a, b, bext;hit"),
    ],
)
def test_append(existing: bytes | None, expected: bytes) -> None:
    assert append_cache_status(existing, CacheStatus(hit=True)) == expected


def test_key_is_never_sent() -> None:
    assert b"key" not in CacheStatus(hit=True, ttl=1, stored=True).serialise()


@given(st.text(max_size=40), st.integers(), st.integers(min_value=100, max_value=999))
def test_always_ascii(detail: str, ttl: int, fwd_status: int) -> None:
    value = CacheStatus(fwd=Fwd.MISS, fwd_status=fwd_status, ttl=ttl, detail=detail).serialise()
    value.decode("ascii")
    assert b"\n" not in value
