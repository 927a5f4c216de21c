"""Streamed bodies (proxied responses) and file bodies, compressed as they are sent."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bext.compress.filter import MAX_BUFFERED_SIZE
from bext.compress.stream import BodylessStream, CompressedStream
from bext.http.filebody import FileBody
from bext.http.message import Response
from tests.compress.support_compress import (
    TEXT,
    StreamDecoder,
    body_of,
    collect,
    compressor,
    decode,
    header,
    request,
    run,
)

EVENTS = [b"data: event number %d, with some repeated words in it\n\n" % i for i in range(40)]


class Source:
    """An upstream body: yields the given chunks, records whether it was closed."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.yielded = 0
        self.closed = False
        self.started = False

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        if self.closed or self.yielded == len(self.chunks):
            raise StopAsyncIteration
        if self.fail_after is not None and self.yielded == self.fail_after:
            raise OSError("upstream died")
        await asyncio.sleep(0)
        self.yielded += 1
        return self.chunks[self.yielded - 1]

    async def aclose(self) -> None:
        self.closed = True


def streamed(
    source: AsyncIterator[bytes],
    content_type: bytes = b"text/plain",
    content_length: int | None = None,
    *extra: tuple[bytes, bytes],
) -> Response:
    headers = [(b"Content-Type", content_type), *extra]
    return Response(200, headers, stream=source, content_length=content_length)


@pytest.mark.parametrize("encoding", [b"br", b"gzip"])
def test_stream_round_trips(encoding: bytes) -> None:
    source = Source(EVENTS)
    out = compressor().apply(request(encoding.decode()), streamed(source))
    assert header(out, b"content-encoding") == encoding
    assert header(out, b"vary") == b"Accept-Encoding"
    assert out.content_length is None  # chunked
    assert decode(encoding, run(body_of(out))) == b"".join(EVENTS)


@pytest.mark.parametrize("encoding", [b"br", b"gzip"])
def test_every_upstream_chunk_is_decodable_as_soon_as_it_is_sent(encoding: bytes) -> None:
    """The compressed stream never holds data back waiting for more."""
    source = Source(EVENTS)
    out = compressor().apply(request(encoding.decode()), streamed(source))

    async def check() -> None:
        assert out.stream is not None
        decoder = StreamDecoder(encoding)
        decoded = b""
        async for chunk in out.stream:
            decoded += decoder.feed(chunk)
            # everything the upstream has produced so far is already readable
            assert decoded == b"".join(EVENTS[: source.yielded])
        assert decoder.done()
        assert source.yielded == len(EVENTS)

    run(check())


def test_stream_of_known_length_respects_min_size() -> None:
    small = streamed(Source([b"tiny"]), b"text/plain", 4)
    assert compressor().apply(request("br"), small) is small
    large = streamed(Source([TEXT]), b"text/plain", len(TEXT), (b"Content-Length", b"7"))
    out = compressor().apply(request("br"), large)
    assert header(out, b"content-encoding") == b"br"
    assert header(out, b"content-length") is None
    assert out.content_length is None


def test_large_streams_are_still_compressed() -> None:
    chunk = TEXT * 64
    chunks = [chunk] * ((MAX_BUFFERED_SIZE // len(chunk)) + 2)
    size = sum(map(len, chunks))
    out = compressor().apply(request("gzip"), streamed(Source(chunks), b"text/csv", size))
    assert header(out, b"content-encoding") == b"gzip"
    assert len(decode(b"gzip", run(body_of(out)))) == size


def test_stream_skips_empty_chunks() -> None:
    out = compressor().apply(request("gzip"), streamed(Source([b"", TEXT, b"", b""])))
    assert decode(b"gzip", run(body_of(out))) == TEXT


def test_closing_early_closes_the_upstream() -> None:
    source = Source(EVENTS)
    out = compressor().apply(request("br"), streamed(source))

    async def take_two() -> None:
        assert isinstance(out.stream, CompressedStream)
        await out.stream.__anext__()
        await out.stream.__anext__()
        await out.stream.aclose()
        assert source.closed
        assert await collect(out.stream) == []

    run(take_two())
    assert source.yielded == 2


def test_closing_before_reading_closes_the_upstream() -> None:
    source = Source(EVENTS)
    out = compressor().apply(request("gzip"), streamed(source))
    assert out.stream is not None
    run(out.stream.aclose())  # type: ignore[attr-defined]
    assert source.closed and not source.started


def test_an_async_generator_upstream_is_closed_too() -> None:
    finished: list[str] = []

    async def upstream() -> AsyncIterator[bytes]:
        try:
            for event in EVENTS:
                yield event
        finally:
            finished.append("closed")

    async def go() -> None:
        out = compressor().apply(request("br"), streamed(upstream()))
        assert out.stream is not None
        await out.stream.__anext__()
        await out.stream.aclose()  # type: ignore[attr-defined]

    run(go())
    assert finished == ["closed"]


def test_upstream_failure_propagates_and_closes() -> None:
    source = Source(EVENTS, fail_after=3)
    out = compressor().apply(request("br"), streamed(source))
    with pytest.raises(OSError, match="upstream died"):
        run(body_of(out))
    assert source.closed


def test_head_of_a_stream_sends_headers_only_and_closes_it() -> None:
    source = Source(EVENTS)
    head = compressor().apply(request("br", method="HEAD"), streamed(source, b"text/html"))
    get = compressor().apply(request("br"), streamed(Source(EVENTS), b"text/html"))
    assert head.headers == get.headers and head.content_length is None
    assert isinstance(head.stream, BodylessStream)
    assert run(collect(head.stream)) == []
    assert source.closed and source.yielded == 0


def test_streams_of_other_types_pass_through() -> None:
    source = Source(EVENTS)
    response = streamed(source, b"image/jpeg")
    assert compressor().apply(request("br"), response) is response
    sse = streamed(Source(EVENTS), b"text/event-stream; charset=utf-8")
    assert compressor().apply(request("br"), sse) is sse


def test_event_stream_opt_in_flushes_every_event() -> None:
    source = Source(EVENTS)
    comp = compressor(types=("text/event-stream",))
    out = comp.apply(request("gzip"), streamed(source, b"text/event-stream"))

    async def check() -> None:
        decoder = StreamDecoder(b"gzip")
        assert out.stream is not None
        seen = 0
        async for chunk in out.stream:
            seen += 1
            if seen <= len(EVENTS):
                assert decoder.feed(chunk) == EVENTS[seen - 1]

    run(check())


# -- file bodies -----------------------------------------------------------------------


def file_response(
    path: Path, etag: bytes | None = b'"f1"', content_type: bytes = b"text/css"
) -> tuple[Response, FileBody]:
    fd = os.open(path, os.O_RDONLY)
    body = FileBody(fd, 0, path.stat().st_size)
    headers = [(b"Content-Type", content_type), (b"Accept-Ranges", b"bytes")]
    if etag is not None:
        headers.append((b"ETag", etag))
    return Response(200, headers, file=body), body


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def css(tmp_path: Path) -> Path:
    path = tmp_path / "site.css"
    path.write_bytes(
        b"".join(b".rule-%d { color: #%06x; margin: 0 auto; }\n" % (i, i) for i in range(30000))
    )
    return path


@pytest.mark.parametrize("encoding", [b"br", b"gzip"])
def test_file_is_compressed_while_read_and_closed(css: Path, encoding: bytes) -> None:
    response, body = file_response(css)
    fd = body.fd
    out = compressor().apply(request(encoding.decode()), response)
    assert out.file is None and out.stream is not None and out.content_length is None
    assert header(out, b"content-encoding") == encoding
    assert header(out, b"etag") == b'W/"f1"'
    assert header(out, b"accept-ranges") is None
    assert decode(encoding, run(body_of(out))) == css.read_bytes()
    assert not is_open(fd) or body.fd == -1


def test_file_result_is_cached_and_the_next_one_never_read(css: Path) -> None:
    comp = compressor()
    first, _ = file_response(css)
    compressed = run(body_of(comp.apply(request("br"), first)))
    assert len(comp.cache) == 1
    second, body = file_response(css)
    out = comp.apply(request("br"), second)
    assert out.stream is None and out.body == compressed
    assert out.content_length == len(compressed)
    assert body.fd == -1  # closed at once, never read
    head, body = file_response(css)
    out = comp.apply(request("br", method="HEAD"), head)
    assert out.content_length == len(compressed) and body.fd == -1


def test_file_cache_key_names_the_resource(css: Path) -> None:
    comp = compressor()
    run(body_of(comp.apply(request("gzip"), file_response(css)[0])))
    other = request("gzip")
    other.path = "/other.css"
    out = comp.apply(other, file_response(css)[0])
    assert out.stream is not None  # not served from the first path's entry
    run(body_of(out))
    assert len(comp.cache) == 2


def test_weak_or_missing_etag_files_are_not_cached(css: Path) -> None:
    comp = compressor()
    for etag in (b'W/"f1"', None):
        run(body_of(comp.apply(request("br"), file_response(css, etag)[0])))
    assert len(comp.cache) == 0


def test_file_not_read_to_the_end_is_not_cached(css: Path) -> None:
    comp = compressor()
    response, body = file_response(css)
    out = comp.apply(request("br"), response)

    async def abandon() -> None:
        assert isinstance(out.stream, CompressedStream)
        await out.stream.__anext__()
        await out.stream.aclose()

    run(abandon())
    assert body.fd == -1 and len(comp.cache) == 0


def test_file_stream_dropped_unread_closes_the_file(css: Path) -> None:
    response, body = file_response(css)
    out = compressor().apply(request("br"), response)
    del response, out
    assert body.fd == -1


def test_head_of_a_file_closes_it_and_matches_get(css: Path) -> None:
    comp = compressor(memory_cache=0)
    head_response, body = file_response(css)
    head = comp.apply(request("gzip", method="HEAD"), head_response)
    assert body.fd == -1
    get_response, get_body = file_response(css)
    get = comp.apply(request("gzip"), get_response)
    assert head.headers == get.headers and head.content_length == get.content_length is None
    run(collect(head.stream))
    run(body_of(get))
    assert get_body.fd == -1


def test_files_above_the_cap_go_out_with_sendfile(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(MAX_BUFFERED_SIZE + 1)
    response, body = file_response(path, content_type=b"application/json")
    assert compressor().apply(request("br"), response) is response
    assert body.fd >= 0
    body.close()


def test_small_files_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "tiny.css"
    path.write_bytes(b"a{}")
    response, body = file_response(path)
    assert compressor().apply(request("br"), response) is response
    body.close()
