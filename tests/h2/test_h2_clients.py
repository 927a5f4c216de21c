"""Real clients against bext's HTTP/2: curl (nghttp2), httpx (h2), h2load; ALPN over TLS.

Also HTTP/1.1 over TLS through the same ALPN dispatcher, including static files: on TLS
they must be encrypted, never ``sendfile``-d raw onto the socket underneath.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from tests.h2.support import PKI
from tests.support.inproc import serve

CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")
LOOPS = ("asyncio", "uvloop")


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    return "HTTP2" in subprocess.run([CURL, "-V"], capture_output=True, text=True).stdout


needs_curl = pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP/2 is not installed")


async def handler(request: Request) -> Response:
    body = await request.body.read_all(1 << 30)
    if request.target.startswith(b"/sha"):
        return Response(
            200, [(b"Content-Type", b"text/plain")], hashlib.sha256(body).hexdigest().encode()
        )
    return Response(200, [(b"Content-Type", b"text/plain")], b"hello " + request.target)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=20)


@needs_curl
@pytest.mark.parametrize("loop", LOOPS)
def test_curl_h2c_prior_knowledge(loop: str, tmp_path: Path) -> None:
    upload = tmp_path / "up.bin"
    data = os.urandom(3 * 1024 * 1024)
    upload.write_bytes(data)
    with serve(handler, loop=loop) as port:
        base = f"http://127.0.0.1:{port}"
        # One URL per run: curl 7.88 fails to reuse a prior-knowledge connection (curl#10634).
        out = curl("--http2-prior-knowledge", "-w", " %{http_version}", f"{base}/a")
        assert out.stdout == "hello /a 2", out.stderr
        out = curl("--http2-prior-knowledge", "--data-binary", f"@{upload}", f"{base}/sha")
        assert out.stdout == hashlib.sha256(data).hexdigest(), out.stderr
        times = [
            float(curl("--http2-prior-knowledge", "-w", "%{time_total}", "-o", "/dev/null",
                       f"{base}/t").stdout)
            for _ in range(3)
        ]  # fmt: skip
        assert min(times) < 0.03  # no 40 ms Nagle stall between the ACK and the response


@needs_curl
def test_curl_over_tls_alpn(pki: PKI) -> None:
    with serve(handler, ssl_context=pki.server_context()) as port:
        url = f"https://127.0.0.1:{port}/tls"
        out = curl("--cacert", str(pki.ca_path), "--http2", "-w", " %{http_version}", url)
        assert out.stdout == "hello /tls 2", out.stderr
        out = curl("--cacert", str(pki.ca_path), "--http1.1", "-w", " %{http_version}", url)
        assert out.stdout == "hello /tls 1.1", out.stderr


@pytest.mark.parametrize("loop", LOOPS)
def test_httpx_alpn_h2_and_http11_fallback(pki: PKI, loop: str) -> None:
    with serve(handler, ssl_context=pki.server_context(), loop=loop) as port:
        url = f"https://localhost:{port}/x"
        with httpx.Client(http2=True, verify=pki.client_context(["h2", "http/1.1"])) as client:
            r = client.get(url)
            assert r.http_version == "HTTP/2" and r.text == "hello /x"
            data = os.urandom(2_000_000)
            r = client.post(f"https://localhost:{port}/sha", content=data)
            assert r.text == hashlib.sha256(data).hexdigest()
        with httpx.Client(http2=False, verify=pki.client_context(["http/1.1"])) as client:
            r = client.get(url)
            assert r.http_version == "HTTP/1.1" and r.text == "hello /x"


def test_tls_client_without_alpn_gets_http11(pki: PKI) -> None:
    with serve(handler, ssl_context=pki.server_context()) as port:
        context = pki.client_context()
        context.set_alpn_protocols([])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() is None
            tls.sendall(b"GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello /plain")


@pytest.mark.parametrize("loop", LOOPS)
def test_static_file_over_tls_is_encrypted_not_sendfiled(
    pki: PKI, tmp_path: Path, loop: str
) -> None:
    """HTTP/1.1 over TLS must not sendfile to the raw socket under the TLS layer."""
    data = os.urandom(3 * 1024 * 1024 + 7)
    path = tmp_path / "static.bin"
    path.write_bytes(data)

    def file_handler(request: Request) -> Response:
        fd = os.open(path, os.O_RDONLY)
        return Response(
            200, [(b"Content-Type", b"application/octet-stream")], file=FileBody(fd, 0, len(data))
        )

    with serve(file_handler, ssl_context=pki.server_context(), loop=loop) as port:
        url = f"https://localhost:{port}/static.bin"
        with httpx.Client(http2=False, verify=pki.client_context(["http/1.1"])) as client:
            for _ in range(2):  # and the connection is still usable afterwards
                r = client.get(url)
                assert r.http_version == "HTTP/1.1" and r.content == data
        with httpx.Client(http2=True, verify=pki.client_context()) as client:
            r = client.get(url)
            assert r.http_version == "HTTP/2" and r.content == data


def _h2load(*args: str) -> str:
    assert H2LOAD is not None
    out = subprocess.run([H2LOAD, *args], capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


@pytest.mark.skipif(H2LOAD is None, reason="h2load (nghttp2-client) is not installed")
def test_h2load_h2c_and_tls(pki: PKI) -> None:
    async def small(request: Request) -> Response:
        await asyncio.sleep(0)
        return Response(200, [], b"x" * (len(request.target) * 100))

    with serve(small, loop="uvloop") as port:
        out = _h2load("-n", "2000", "-c", "4", "-m", "16", f"http://127.0.0.1:{port}/load")
        assert "2000 succeeded, 0 failed, 0 errored" in out, out
        assert "status codes: 2000 2xx" in out, out
    with serve(small, loop="uvloop", ssl_context=pki.server_context()) as port:
        out = _h2load("-n", "500", "-c", "2", "-m", "10", f"https://127.0.0.1:{port}/tls")
        assert "500 succeeded, 0 failed, 0 errored" in out, out
        assert "Application protocol: h2" in out, out
