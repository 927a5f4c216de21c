"""Helpers shared by the compression tests: requests, responses, decoders."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import brotli

from bext.compress.filter import Compressor
from bext.config.schema import CompressionConfig
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response

T = TypeVar("T")

TEXT = b"<!DOCTYPE html><title>bext</title>" + b"".join(
    b"<p>line %d of a rather repetitive page</p>\n" % i for i in range(200)
)


def request(accept_encoding: str | None = "gzip, deflate, br", method: str = "GET") -> Request:
    headers = [(b"host", b"t")]
    if accept_encoding is not None:
        headers.append((b"accept-encoding", accept_encoding.encode()))
    req = Request(method, b"/page", headers, "1.1", "http", "127.0.0.1", 5000, 80, EMPTY_BODY, 0.0)
    req.host = "t"
    req.path = "/page"
    return req


def html(body: bytes = TEXT, *extra: tuple[bytes, bytes], status: int = 200) -> Response:
    return Response(status, [(b"Content-Type", b"text/html; charset=utf-8"), *extra], body)


def compressor(**settings: Any) -> Compressor:
    return Compressor(CompressionConfig(**settings))


def header(response: Response, name: bytes) -> bytes | None:
    values = [v for n, v in response.headers if n.lower() == name]
    assert len(values) <= 1, f"{name!r} repeated: {values}"
    return values[0] if values else None


def decode(encoding: bytes | None, data: bytes) -> bytes:
    if encoding == b"br":
        out: bytes = brotli.decompress(data)
        return out
    if encoding == b"gzip":
        return gzip.decompress(data)
    assert encoding is None
    return data


class StreamDecoder:
    """Decodes a compressed body piece by piece, as a browser does."""

    def __init__(self, encoding: bytes) -> None:
        self.encoding = encoding
        self._br = brotli.Decompressor() if encoding == b"br" else None
        self._gz = zlib.decompressobj(31) if encoding == b"gzip" else None

    def feed(self, data: bytes) -> bytes:
        if self._br is not None:
            out: bytes = self._br.process(data)
            return out
        assert self._gz is not None
        return self._gz.decompress(data)

    def done(self) -> bool:
        if self._br is not None:
            return bool(self._br.is_finished())
        assert self._gz is not None
        return self._gz.eof


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def collect(stream: AsyncIterator[bytes] | None) -> list[bytes]:
    assert stream is not None
    return [chunk async for chunk in stream]


async def body_of(response: Response) -> bytes:
    if response.stream is None:
        return response.body
    return b"".join(await collect(response.stream))
