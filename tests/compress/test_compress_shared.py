"""Shared responses (respond rules, cached static files): the phase's result is remembered."""

from __future__ import annotations

from bext.compress.filter import Compressor
from bext.config.schema import CompressionConfig
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response


def request(accept_encoding: bytes | None) -> Request:
    headers = [(b"host", b"t")]
    if accept_encoding is not None:
        headers.append((b"accept-encoding", accept_encoding))
    return Request("GET", b"/", headers, "1.1", "http", "127.0.0.1", 1, 80, EMPTY_BODY, 0.0)


def shared_response() -> Response:
    body = b"hello world " * 500
    response = Response(200, [(b"Content-Type", b"text/plain"), (b"ETag", b'"x"')], body)
    response.shared = True
    return response


def test_same_result_object_for_the_same_shared_response_and_encoding() -> None:
    compressor = Compressor(CompressionConfig())
    response = shared_response()
    first = compressor.apply(request(b"gzip"), response)
    assert first is compressor.apply(request(b"gzip"), response)
    identity = compressor.apply(request(None), response)
    assert identity is compressor.apply(request(None), response)
    assert identity is not first and identity.body == response.body


def test_not_remembered_for_unshared_responses() -> None:
    compressor = Compressor(CompressionConfig())
    response = shared_response()
    response.shared = False
    assert compressor.apply(request(b"gzip"), response) is not compressor.apply(
        request(b"gzip"), response
    )


def test_memory_bound_respected() -> None:
    compressor = Compressor(CompressionConfig(memory_cache=20_000))
    for _ in range(50):
        compressor.apply(request(None), shared_response())
    assert compressor._shared_bytes <= 20_000
