"""The compression phase on bytes bodies: when it compresses, and what it does to headers."""

from __future__ import annotations

import os

import pytest

from bext.compress.filter import MAX_BUFFERED_SIZE
from bext.http.message import Response
from bext.proxy.tunnel import Tunnel
from tests.compress.support_compress import TEXT, compressor, decode, header, html, request


@pytest.mark.parametrize(("accept", "encoding"), [("br", b"br"), ("gzip", b"gzip")])
def test_bytes_body_is_compressed(accept: str, encoding: bytes) -> None:
    original = html()
    out = compressor().apply(request(accept), original)
    assert out is not original
    assert header(out, b"content-encoding") == encoding
    assert header(out, b"vary") == b"Accept-Encoding"
    assert decode(encoding, out.body) == TEXT
    assert out.content_length == len(out.body) < len(TEXT) // 4
    assert out.status == 200 and out.stream is None and out.file is None


def test_browser_default_gets_brotli() -> None:
    out = compressor().apply(request("gzip, deflate, br, zstd"), html())
    assert header(out, b"content-encoding") == b"br"


@pytest.mark.parametrize("accept", [None, "identity", "deflate", "br;q=0, gzip;q=0", ""])
def test_identity_clients_get_the_body_as_is_with_vary(accept: str | None) -> None:
    original = html()
    out = compressor().apply(request(accept), original)
    assert out.body == TEXT and out.content_length == len(TEXT)
    assert header(out, b"content-encoding") is None
    assert header(out, b"vary") == b"Accept-Encoding"


def test_the_shared_response_is_never_modified() -> None:
    original = html(TEXT, (b"ETag", b'"v1"'), (b"Vary", b"Cookie"), (b"Content-Length", b"9"))
    original.shared = True
    before = list(original.headers)
    comp = compressor()
    for accept in ("br", "gzip", None, "identity"):
        comp.apply(request(accept), original)
    assert original.headers == before
    assert original.body == TEXT and original.content_length == len(TEXT)


def test_a_response_of_its_own_gets_vary_without_a_copy() -> None:
    """A proxied response is the request's own: no second Response just for ``Vary``."""
    original = html(TEXT, (b"Vary", b"Cookie"))
    out = compressor().apply(request(None), original)
    assert out is original
    assert header(out, b"vary") == b"Cookie, Accept-Encoding"


def _skip_cases() -> list[tuple[str, Response]]:
    big = TEXT
    return [
        ("206", html(big, (b"Content-Range", b"bytes 0-9/100"), status=206)),
        ("content-range on a 200", html(big, (b"Content-Range", b"bytes 0-9/100"))),
        ("404", html(big, status=404)),
        ("201", html(big, status=201)),
        ("304", Response(304, [(b"Content-Type", b"text/html"), (b"ETag", b'"x"')])),
        ("already br", html(big, (b"Content-Encoding", b"br"))),
        ("already gzip, odd case", html(big, (b"content-ENCODING", b"gzip"))),
        ("no-transform", html(big, (b"Cache-Control", b"public, No-Transform"))),
        ("no-transform alone", html(big, (b"cache-control", b"no-transform"))),
        ("image", Response(200, [(b"Content-Type", b"image/png")], big)),
        ("octet-stream", Response(200, [(b"Content-Type", b"application/octet-stream")], big)),
        ("no content type", Response(200, [], big)),
        ("garbage content type", Response(200, [(b"Content-Type", b"html")], big)),
        ("small", html(b"x" * 1023)),
        ("empty", html(b"")),
        ("too big", html(b"a" * (MAX_BUFFERED_SIZE + 1))),
        ("event stream", Response(200, [(b"Content-Type", b"text/event-stream")], big)),
    ]


@pytest.mark.parametrize(("why", "response"), _skip_cases(), ids=[c[0] for c in _skip_cases()])
def test_skipped_responses_are_returned_unchanged(why: str, response: Response) -> None:
    comp = compressor()
    for accept in ("br", "gzip", "*"):
        assert comp.apply(request(accept), response) is response, why


def test_switching_protocols_is_untouched() -> None:
    response = Response(101, [(b"Content-Type", b"text/plain")], tunnel=object())  # type: ignore[arg-type]
    assert compressor().apply(request("br"), response) is response
    # even a tunnel with a 200 status (never built today) is not touched
    tunnel: Tunnel = object()  # type: ignore[assignment]
    odd = Response(200, [(b"Content-Type", b"text/plain")], TEXT, tunnel=tunnel)
    assert compressor().apply(request("br"), odd) is odd


def test_min_size_boundary() -> None:
    comp = compressor(min_size=100)
    assert comp.apply(request("gzip"), html(b"a" * 99)).body == b"a" * 99
    out = comp.apply(request("gzip"), html(b"a" * 100))
    assert header(out, b"content-encoding") == b"gzip"


def test_types_are_media_ranges() -> None:
    comp = compressor(types=("text/*", "application/json"))
    for content_type in (b"text/css", b"TEXT/Plain; charset=UTF-8", b"application/json"):
        out = comp.apply(request("br"), Response(200, [(b"content-type", content_type)], TEXT))
        assert header(out, b"content-encoding") == b"br", content_type
    for content_type in (b"application/javascript", b"application/json-seq", b"textual/x"):
        response = Response(200, [(b"content-type", content_type)], TEXT)
        assert comp.apply(request("br"), response) is response, content_type


def test_event_stream_only_when_listed_exactly() -> None:
    sse = Response(200, [(b"Content-Type", b"text/event-stream")], TEXT)
    assert compressor(types=("text/*",)).apply(request("br"), sse) is sse
    out = compressor(types=("text/*", "text/event-stream")).apply(request("br"), sse)
    assert header(out, b"content-encoding") == b"br"


def test_incompressible_body_goes_out_as_is() -> None:
    noise = os.urandom(4000)
    out = compressor().apply(
        request("br"), Response(200, [(b"Content-Type", b"text/plain")], noise)
    )
    assert out.body == noise
    assert header(out, b"content-encoding") is None
    assert header(out, b"vary") == b"Accept-Encoding"


# -- header rewriting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ([b"Cookie"], [b"Cookie, Accept-Encoding"]),
        ([b"Accept-Encoding"], [b"Accept-Encoding"]),
        ([b"accept-encoding, Cookie"], [b"accept-encoding, Cookie"]),
        ([b"Cookie,  ACCEPT-ENCODING "], [b"Cookie,  ACCEPT-ENCODING "]),
        ([b"*"], [b"*"]),
        ([b"Cookie", b"Origin"], [b"Cookie, Accept-Encoding", b"Origin"]),
        ([b"Cookie", b"Accept-Encoding"], [b"Cookie", b"Accept-Encoding"]),
        ([b""], [b"Accept-Encoding"]),
        ([b"Accept-Language "], [b"Accept-Language, Accept-Encoding"]),
    ],
)
@pytest.mark.parametrize("accept", ["br", "identity"])
def test_vary_is_merged(vary: list[bytes], expected: list[bytes], accept: str) -> None:
    original = html(TEXT, *[(b"Vary", value) for value in vary])
    out = compressor().apply(request(accept), original)
    assert [v for n, v in out.headers if n.lower() == b"vary"] == expected


def test_vary_keeps_the_field_name_as_given() -> None:
    out = compressor().apply(request("br"), html(TEXT, (b"vary", b"Cookie")))
    assert (b"vary", b"Cookie, Accept-Encoding") in out.headers


@pytest.mark.parametrize(
    ("etag", "compressed", "identity"),
    [
        (b'"abc"', b'W/"abc"', b'"abc"'),
        (b'W/"abc"', b'W/"abc"', b'W/"abc"'),
        (b"unquoted", b"unquoted", b"unquoted"),
    ],
)
def test_strong_etag_becomes_weak_when_compressed(
    etag: bytes, compressed: bytes, identity: bytes
) -> None:
    original = html(TEXT, (b"ETag", etag))
    comp = compressor()
    assert header(comp.apply(request("gzip"), original), b"etag") == compressed
    assert header(comp.apply(request("identity"), original), b"etag") == identity


def test_length_ranges_and_digests_dropped_when_compressed() -> None:
    original = html(
        TEXT,
        (b"content-length", b"%d" % len(TEXT)),
        (b"Accept-Ranges", b"bytes"),
        (b"Content-MD5", b"xxx"),
        (b"Content-Digest", b"sha-256=:xxx:"),
        (b"Content-Encoding", b""),
        (b"X-Kept", b"1"),
        (b"Last-Modified", b"Tue, 01 Jul 2025 00:00:00 GMT"),
    )
    out = compressor().apply(request("br"), original)
    names = [n.lower() for n, _ in out.headers]
    for dropped in (b"content-length", b"accept-ranges", b"content-md5", b"content-digest"):
        assert dropped not in names
    assert names.count(b"content-encoding") == 1
    assert header(out, b"content-encoding") == b"br"
    assert header(out, b"x-kept") == b"1" and header(out, b"last-modified") is not None
    assert out.content_length == len(out.body)
    # the identity variant keeps them all
    plain = compressor().apply(request(None), original)
    assert header(plain, b"accept-ranges") == b"bytes"


def test_head_gets_the_headers_a_get_gets() -> None:
    original = html(TEXT, (b"ETag", b'"h"'))
    comp = compressor()
    for accept in ("br", "gzip", "identity"):
        get = comp.apply(request(accept), original)
        head = comp.apply(request(accept, method="HEAD"), original)
        assert head.headers == get.headers
        assert head.content_length == get.content_length


def test_what_is_made_of_a_shared_response_is_shared_too() -> None:
    """The remembered variant goes to every request like this one: later phases must copy
    it, and the HTTP/1.1 writer may serialise its head once."""
    original = html()
    original.shared = True
    comp = compressor()
    for accept in ("gzip", None):
        first = comp.apply(request(accept), original)
        assert first is not original and first.shared
        assert comp.apply(request(accept), original) is first


def test_a_cache_entry_is_judged_once_and_its_hits_still_compressed() -> None:
    """Responses with the same ``identity`` (hits of one cache entry) share the verdict on
    their headers; what each hit gets still follows its own Accept-Encoding."""
    comp = compressor()
    judged: list[Response] = []
    verdict = comp._verdict

    def counting(response: Response) -> tuple[bytes | None] | None:
        judged.append(response)
        return verdict(response)

    comp._verdict = counting  # type: ignore[method-assign]
    for accept in ("gzip", None, "br", "gzip"):
        hit = html(TEXT, (b"Age", b"3"))
        hit.identity = ("entry", 1)
        out = comp.apply(request(accept), hit)
        expected = {"gzip": b"gzip", "br": b"br", None: None}[accept]
        assert header(out, b"content-encoding") == expected
        assert header(out, b"vary") == b"Accept-Encoding"
    assert len(judged) == 1
    other = html(TEXT, (b"Cache-Control", b"no-transform"))
    other.identity = ("entry", 2)  # another entry: judged on its own headers
    assert header(comp.apply(request("gzip"), other), b"content-encoding") is None
    assert len(judged) == 2


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([], [b"Accept-Encoding"]),
        ([(b"Vary", b"Cookie")], [b"Cookie, Accept-Encoding"]),
        ([(b"vary", b" accept-encoding ")], [b" accept-encoding "]),
        ([(b"Vary", b"*")], [b"*"]),
        ([(b"Vary", b"")], [b"Accept-Encoding"]),
        ([(b"Vary", b"Cookie"), (b"Vary", b"Accept-Encoding")], [b"Cookie", b"Accept-Encoding"]),
        ([(b"Vary", b"Cookie"), (b"Vary", b"Origin")], [b"Cookie, Accept-Encoding", b"Origin"]),
    ],
)
@pytest.mark.parametrize("accept", [None, "gzip"])
def test_vary_is_added_once_or_extended(
    fields: list[tuple[bytes, bytes]], expected: list[bytes], accept: str | None
) -> None:
    """Vary is found in the same pass as the other fields the phase reads: an existing
    field that covers Accept-Encoding (or ``*``) stays as it is, the first other one is
    extended, and without any one is added, whether or not the body is compressed."""
    out = compressor().apply(request(accept), html(TEXT, *fields))
    assert [value for name, value in out.headers if name.lower() == b"vary"] == expected
    assert (header(out, b"content-encoding") is not None) == (accept is not None)
