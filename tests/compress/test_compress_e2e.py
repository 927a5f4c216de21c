"""Compression through a real master: respond rules and a streaming proxied response."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.compress.support_compress import StreamDecoder, decode
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]

TEXT = "".join(f"line {i:03d}: bext compresses this text on the fly\n" for i in range(100))
PIECES = [f"piece {i}: {'streamed words ' * 8}\n".encode() for i in range(6)]


class StreamingUpstream:
    """Answers every request with a chunked text/plain body, one piece per ``release()``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.gate = threading.Semaphore(0)
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def release(self) -> None:
        self.gate.release()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            self.heads.append(head)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for piece in PIECES:
                if not self.gate.acquire(timeout=10):
                    return
                conn.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")
            conn.recv(1)  # keep-alive: wait for bext to close or reuse

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture
def upstream() -> Iterator[StreamingUpstream]:
    server = StreamingUpstream()
    yield server
    server.stop()


def routes(upstream_port: int) -> str:
    body = TEXT.replace("\n", "\\n")
    return f"""
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{upstream_port}"

[[route_rules]]
pattern = "/text"
respond = {{ body = "{body}", content_type = "text/plain; charset=utf-8" }}

[[route_rules]]
pattern = "/stream"
proxy = "app"
"""


def raw_get(client: httpx.Client, url: str, accept: str, method: str = "GET") -> httpx.Response:
    """A response whose body is left as sent (httpx would decode it otherwise)."""
    response = client.send(
        client.build_request(method, url, headers={"Accept-Encoding": accept}), stream=True
    )
    response.read_raw = b"".join(response.iter_raw())  # type: ignore[attr-defined]
    return response


def test_respond_rule_compressed_for_br_and_gzip(
    start_bext: Start, upstream: StreamingUpstream
) -> None:
    server = start_bext(config(routes(upstream.port), workers=1))
    url = server.base_url + "/text"
    with httpx.Client(timeout=5) as client:
        plain = raw_get(client, url, "identity")
        assert plain.status_code == 200
        assert plain.read_raw == TEXT.encode()  # type: ignore[attr-defined]
        assert "content-encoding" not in plain.headers
        assert plain.headers["vary"] == "Accept-Encoding"
        etag = plain.headers["etag"]
        assert etag.startswith('"')
        for accept, encoding in (("br", "br"), ("gzip", "gzip"), ("gzip, deflate, br", "br")):
            for _ in range(2):  # the second one comes from the compressed cache
                r = raw_get(client, url, accept)
                raw: bytes = r.read_raw  # type: ignore[attr-defined]
                assert r.headers["content-encoding"] == encoding
                assert r.headers["vary"] == "Accept-Encoding"
                assert r.headers["etag"] == "W/" + etag
                assert int(r.headers["content-length"]) == len(raw) < len(TEXT) // 4
                assert decode(encoding.encode(), raw) == TEXT.encode()
            head = raw_get(client, url, accept, method="HEAD")
            assert head.read_raw == b""  # type: ignore[attr-defined]
            assert head.headers["content-encoding"] == encoding
            assert head.headers["content-length"] == r.headers["content-length"]
        # and httpx's own decoding agrees
        assert client.get(url, headers={"Accept-Encoding": "br"}).text == TEXT


def test_proxied_stream_is_compressed_incrementally(
    start_bext: Start, upstream: StreamingUpstream
) -> None:
    server = start_bext(config(routes(upstream.port), workers=1))
    with (
        httpx.Client(timeout=5) as client,
        client.stream("GET", server.base_url + "/stream", headers={"Accept-Encoding": "br"}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-encoding"] == "br"
        assert r.headers["vary"] == "Accept-Encoding"
        assert "content-length" not in r.headers
        assert r.headers["transfer-encoding"] == "chunked"
        decoder = StreamDecoder(b"br")
        decoded = b""
        released = 1
        upstream.release()
        # Each piece is only sent once the previous one has been decoded by the client:
        # a compressor that held data back would stall here until the read timeout.
        for raw in r.iter_raw():
            decoded += decoder.feed(raw)
            if decoded == b"".join(PIECES[:released]) and released < len(PIECES):
                released += 1
                upstream.release()
        assert decoded == b"".join(PIECES)
        assert decoder.done()
    assert b"accept-encoding: br" in upstream.heads[0].lower()
