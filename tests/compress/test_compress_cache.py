"""The compressed-body cache: hits skip compression, memory stays bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bext.compress.cache import ENTRY_OVERHEAD, CompressedCache
from bext.compress.codecs import Codecs
from bext.compress.filter import Compressor
from tests.compress.support_compress import TEXT, compressor, decode, header, html, request


class CountingCodecs(Codecs):
    def __init__(self, inner: Codecs) -> None:
        super().__init__(inner.brotli_quality, inner.gzip_level)
        self.calls: list[str] = []

    def compress(self, encoding: str, data: bytes) -> bytes:
        self.calls.append(encoding)
        return super().compress(encoding, data)


def counting(**settings: Any) -> tuple[Compressor, list[str]]:
    comp = compressor(**settings)
    codecs = CountingCodecs(comp.codecs)
    comp.codecs = codecs
    return comp, codecs.calls


def test_hit_does_not_recompress() -> None:
    comp, calls = counting()
    original = html(TEXT, (b"ETag", b'"v1"'))
    first = comp.apply(request("br"), original)
    for _ in range(5):
        again = comp.apply(request("br"), original)
        assert again.body == first.body and header(again, b"etag") == b'W/"v1"'
    assert calls == ["br"]
    comp.apply(request("gzip"), original)
    comp.apply(request("gzip"), original)
    assert calls == ["br", "gzip"]  # one entry per coding
    assert len(comp.cache) == 2
    comp.apply(request("gzip", method="HEAD"), original)
    assert calls == ["br", "gzip"]


def test_an_equal_body_in_a_new_response_object_hits() -> None:
    comp, calls = counting()
    comp.apply(request("br"), html(bytes(TEXT), (b"ETag", b'"v1"')))
    comp.apply(request("br"), html(bytearray(TEXT).decode().encode(), (b"ETag", b'"v1"')))
    assert calls == ["br"]


def test_without_etag_every_request_compresses() -> None:
    comp, calls = counting()
    original = html(TEXT)
    for _ in range(3):
        comp.apply(request("gzip"), original)
    assert calls == ["gzip"] * 3
    assert len(comp.cache) == 0


def test_same_etag_other_body_is_another_entry() -> None:
    """Two resources sharing an ETag (mtime-size tags do) never get each other's bytes."""
    comp, calls = counting()
    a = html(TEXT, (b"ETag", b'"same"'))
    b = html(TEXT.replace(b"line", b"LINE"), (b"ETag", b'"same"'))
    out_a = comp.apply(request("br"), a)
    out_b = comp.apply(request("br"), b)
    assert decode(b"br", out_a.body) == a.body
    assert decode(b"br", out_b.body) == b.body
    assert calls == ["br", "br"]


def test_zero_memory_cache_disables_caching() -> None:
    comp, calls = counting(memory_cache=0)
    original = html(TEXT, (b"ETag", b'"v1"'))
    comp.apply(request("br"), original)
    comp.apply(request("br"), original)
    assert calls == ["br", "br"]


def test_compressor_cache_is_bounded_by_bytes() -> None:
    comp, _ = counting(memory_cache=64 * 1024)
    for i in range(500):
        body = TEXT + b"%d" % i
        comp.apply(request("gzip"), html(body, (b"ETag", b'"%d"' % i)))
        assert comp.cache.size <= 64 * 1024
    assert 0 < len(comp.cache) < 500


# -- the LRU itself --------------------------------------------------------------------


def cost(size: int) -> int:
    return size + ENTRY_OVERHEAD


def test_lru_evicts_least_recently_used() -> None:
    cache = CompressedCache(4 * cost(100))
    for key in "abcd":
        cache.put(key, b"x" * 100)
    assert cache.size == 4 * cost(100)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("e", b"y" * 100)
    assert cache.get("b") is None
    assert all(cache.get(k) is not None for k in "acde")
    assert cache.size == 4 * cost(100)


def test_lru_refuses_entries_above_a_quarter() -> None:
    cache = CompressedCache(4000)
    assert cache.max_entry == 1000
    cache.put("big", b"x" * (1000 - ENTRY_OVERHEAD + 1))
    assert cache.get("big") is None and cache.size == 0
    cache.put("ok", b"x" * (1000 - ENTRY_OVERHEAD))
    assert cache.get("ok") is not None
    assert cache.fits(1000 - ENTRY_OVERHEAD) and not cache.fits(1000 - ENTRY_OVERHEAD + 1)


def test_lru_replacing_a_key_keeps_the_account_right() -> None:
    cache = CompressedCache(10_000)
    cache.put("k", b"x" * 500)
    cache.put("k", b"y" * 100)
    assert cache.size == cost(100) and len(cache) == 1
    assert cache.get("k") == b"y" * 100


@pytest.mark.parametrize("sizes", [[10, 2000, 5, 900, 900, 900, 1, 2400] * 20])
def test_lru_never_exceeds_capacity(sizes: list[int]) -> None:
    cache = CompressedCache(10_000)
    put: Callable[[object, bytes], None] = cache.put
    for i, size in enumerate(sizes):
        put(i, b"z" * size)
        assert cache.size <= cache.capacity
        assert cache.size == sum(cost(len(v)) for v in cache._entries.values())
