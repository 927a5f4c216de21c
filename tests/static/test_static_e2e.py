"""Static files from a real ``bext run`` master, over real sockets.

``test_static_e2e_large_file_*`` need the HTTP/1.1 connection to send ``Response.file``
bodies (``os.sendfile``); everything else is served from memory or as a stream.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import brotli
import httpx
import pytest
from static_support import collected_static

from tests.conftest import ENGINES
from tests.support.rawhttp import RawConnection, exchange
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]
SECRET = b"TOP-SECRET-CONTENT"
IMMUTABLE = "public, max-age=31536000, immutable"


def static_routes(extra: str = "", rule: str = "") -> str:
    return (
        "[compression]\nenabled = false\n"
        + extra
        + '\n[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
        + rule
        + '\n[[route_rules]]\npattern = "/media/**"\nrender = "static"\n'
    )


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    root = app / "staticfiles"
    (root / "css").mkdir(parents=True)
    (root / "css" / "a.css").write_text("body { color: red }\n")
    (root / "ten.txt").write_text("0123456789")
    (root / ".env").write_bytes(b"SECRET_KEY=" + SECRET)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core] " + SECRET)
    (root / ".hidden-dir").mkdir()
    (root / ".hidden-dir" / "x.txt").write_bytes(SECRET)
    (app / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside.txt").write_bytes(SECRET)
    (root / "link-out.txt").symlink_to(tmp_path / "outside.txt")
    (root / "linkdir-out").symlink_to(app)
    (root / "alias.css").symlink_to(root / "css" / "a.css")
    (app / "media").mkdir()
    (app / "media" / "upload.html").write_text("<script>alert(1)</script>")
    return app


def test_static_e2e_collectstatic_output(start_bext: Start) -> None:
    collected = collected_static()
    server = start_bext(config(static_routes(), app_dir=str(collected.parent)))
    manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
    hashed = manifest["admin/css/base.css"]
    headers = {"accept-encoding": "identity"}
    with httpx.Client(base_url=server.base_url, headers=headers) as client:
        r = client.get("/static/" + hashed)
        assert r.status_code == 200 and r.content == (collected / hashed).read_bytes()
        assert r.headers["content-type"] == "text/css; charset=utf-8"
        assert r.headers["cache-control"] == IMMUTABLE
        assert r.headers["content-length"] == str(len(r.content))
        assert r.headers["server"].startswith("bext") and "date" in r.headers
        plain = client.get("/static/admin/css/base.css")
        assert plain.headers["cache-control"] == "no-cache"
        assert plain.content == (collected / "admin/css/base.css").read_bytes()
        for name in ("admin/js/core.js", "admin/img/icon-yes.svg", "admin/css/forms.css"):
            r = client.get("/static/" + manifest[name])
            assert r.status_code == 200 and r.content == (collected / manifest[name]).read_bytes()
        head = client.head("/static/" + hashed)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str((collected / hashed).stat().st_size)
        etag = head.headers["etag"]
        r = client.get("/static/" + hashed, headers={"if-none-match": etag})
        assert r.status_code == 304 and r.content == b""
        assert r.headers["etag"] == etag and r.headers["cache-control"] == IMMUTABLE
        r = client.get("/static/" + hashed, headers={"range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == (collected / hashed).read_bytes()[:10]
        assert client.get("/static/admin/").status_code == 404
        assert client.get("/static/staticfiles.json").json()["paths"] == manifest


def test_static_e2e_protocol_details(start_bext: Start, app_dir: Path) -> None:
    server = start_bext(config(static_routes(), app_dir=str(app_dir)))
    with RawConnection(server.port) as conn:
        # Keep-alive across 200, 304, 206 (single and multipart), 416, 405 and 404.
        conn.send(b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        first = conn.read_response()
        assert first.status == 200 and first.body == b"0123456789"
        etag = first.header("etag")
        assert etag
        conn.send(
            b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n" % etag.encode()
        )
        r = conn.read_response()
        assert r.status == 304 and r.body == b"" and r.header("content-length") is None
        conn.send(b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n")
        r = conn.read_response()
        assert r.status == 206 and r.body == b"234" and r.header("content-range") == "bytes 2-4/10"
        conn.send(b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0,-1\r\n\r\n")
        r = conn.read_response()
        assert r.status == 206
        assert (r.header("content-type") or "").startswith("multipart/byteranges; boundary=")
        assert b"Content-Range: bytes 0-0/10\r\n\r\n0\r\n" in r.body
        assert b"Content-Range: bytes 9-9/10\r\n\r\n9\r\n" in r.body
        conn.send(b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=50-\r\n\r\n")
        r = conn.read_response()
        assert r.status == 416 and r.header("content-range") == "bytes */10"
        conn.send(b"POST /static/ten.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        r = conn.read_response()
        assert r.status == 405 and r.header("allow") == "GET, HEAD"
        conn.send(b"HEAD /static/ten.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response(head_only=True)
        assert r.status == 200 and r.header("content-length") == "10"
        conn.send(b"GET /static/nope.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().status == 404
        conn.send(b"GET /static/css/a.css HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response()
        assert r.status == 200 and r.body == b"body { color: red }\n"
    # Uploads in MEDIA_ROOT are never sniffed into HTML.
    r = exchange(server.port, b"GET /media/upload.html HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.header("x-content-type-options") == "nosniff"


def test_static_e2e_precompressed_variants(start_bext: Start, app_dir: Path) -> None:
    source = ("function f(){return 42}\n" * 200).encode()
    js = app_dir / "staticfiles" / "app.js"
    js.write_bytes(source)
    (app_dir / "staticfiles" / "app.js.br").write_bytes(brotli.compress(source))
    (app_dir / "staticfiles" / "app.js.gz").write_bytes(gzip.compress(source))
    server = start_bext(config(static_routes(), app_dir=str(app_dir)))
    with httpx.Client(base_url=server.base_url) as client:
        tags = set()
        for accept, coding in [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("identity", None)]:
            r = client.get("/static/app.js", headers={"accept-encoding": accept})
            assert r.status_code == 200 and r.content == source  # httpx decodes
            assert r.headers.get("content-encoding") == coding
            assert r.headers["vary"] == "Accept-Encoding"
            tags.add(r.headers["etag"])
        assert len(tags) == 3
        with client.stream("GET", "/static/app.js", headers={"accept-encoding": "br"}) as raw:
            data = b"".join(raw.iter_raw())
            assert data == (app_dir / "staticfiles" / "app.js.br").read_bytes()


def test_static_e2e_changes_show_in_every_worker(start_bext: Start, app_dir: Path) -> None:
    server = start_bext(config(static_routes(), app_dir=str(app_dir), workers=2))
    path = app_dir / "staticfiles" / "css" / "a.css"
    for version in range(3):
        text = f"version {version}\n" * (version + 1)
        tmp = path.with_name("a.css.tmp")
        tmp.write_text(text)
        tmp.rename(path)  # as deploy tools replace files
        for _ in range(8):  # fresh connections: both workers answer some
            r = exchange(server.port, b"GET /static/css/a.css HTTP/1.1\r\nHost: t\r\n\r\n")
            assert r.status == 200 and r.body == text.encode()
    path.unlink()
    for _ in range(4):
        assert (
            exchange(server.port, b"GET /static/css/a.css HTTP/1.1\r\nHost: t\r\n\r\n").status
            == 404
        )


# -- traversal ------------------------------------------------------------------------------------

HOSTILE_TARGETS: list[bytes] = [
    b"/static/../etc/passwd",
    b"/static/../../../../../../etc/passwd",
    b"/static/../secret.txt",
    b"/static/css/../../secret.txt",
    b"/static/%2e%2e/%2e%2e/etc/passwd",
    b"/static/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    b"/static/%2e%2e/secret.txt",
    b"/static/.%2e/secret.txt",
    b"/static/%2e./secret.txt",
    b"/static/..%2fsecret.txt",
    b"/static/..%2Fsecret.txt",
    b"/static/%2e%2e%2fsecret.txt",
    b"/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/static/%2fetc%2fpasswd",
    b"/static/%2Fetc%2Fpasswd",
    b"/static/css/a.css/..%2f..%2f..%2fsecret.txt",
    b"/static/..%252f..%252fetc%252fpasswd",
    b"/static/%252e%252e/secret.txt",
    b"/static/%252e%252e%252fsecret.txt",
    b"/static/%25%32%65%25%32%65/secret.txt",
    b"/static/..\\secret.txt",
    b"/static/..\\..\\etc\\passwd",
    b"/static/..%5csecret.txt",
    b"/static/%5c..%5c..%5cetc%5cpasswd",
    b"/static/%2e%2e%5c%2e%2e%5csecret.txt",
    b"/static/css/a.css%00",
    b"/static/css/a.css%00.png",
    b"/static/%00../secret.txt",
    b"/static/%c0%ae%c0%ae/secret.txt",
    b"/static/%c0%ae%c0%ae%c0%afsecret.txt",
    b"/static/%e0%80%ae%e0%80%ae/secret.txt",
    b"/static/%c1%9c..%c1%9csecret.txt",
    b"/static/..%c0%afsecret.txt",
    b"/static/%c0%2e%c0%2e/secret.txt",
    b"/static/..%ef%bc%8fsecret.txt",
    b"/static/%ff%fe/secret.txt",
    b"/static/%u002e%u002e/secret.txt",
    b"/static/%%32%65%%32%65/secret.txt",
    b"/static/.env",
    b"/static/%2eenv",
    b"/static/%2Eenv",
    b"/static/.git/config",
    b"/static/%2egit/config",
    b"/static/.git%2fconfig",
    b"/static/.hidden-dir/x.txt",
    b"/static/css/../.env",
    b"/static/css/%2e%2e/.env",
    b"/static/./.env",
    b"/static/..;/secret.txt",
    b"/static/...",
    b"/static/link-out.txt",
    b"/static/linkdir-out/secret.txt",
    b"/static////../secret.txt",
    b"//static/../secret.txt?x=1",
    b"/static/%20/../../secret.txt",
    b"/static/%09.env",
    b"/static/%0d%0aX-Injected:%20yes",
    b"/static/css/a.css::$DATA",
    b"/static/../../proc/self/environ",
    b"/static/~/.ssh/id_rsa",
    b"/static/css/a.css/",
    b"/static/",
    b"/static",
    b"/media/../staticfiles/.env",
    b"/media/%2e%2e/secret.txt",
    b"/secret.txt",
    b"http://t/static/../secret.txt",
    b"http://t/static/%2e%2e/secret.txt",
    b"http://t/static/.env",
    b"HTTP://t/static/.git/config",
    b"http://t@evil/static/.env",
    b"http://t/../secret.txt",
    b"*",
]


@pytest.mark.parametrize("engine", ENGINES)
def test_static_e2e_traversal_corpus(start_bext: Start, app_dir: Path, engine: str) -> None:
    assert len(HOSTILE_TARGETS) >= 50
    server = start_bext(
        config(static_routes(), app_dir=str(app_dir), http1_engine=engine, workers=1)
    )
    with RawConnection(server.port) as conn:
        # The allowed cases first: a symlink inside the root is fine.
        conn.send(b"GET /static/alias.css HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response()
        assert r.status == 200 and r.body == b"body { color: red }\n"
    for target in HOSTILE_TARGETS:
        request = b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nAccept: text/html\r\n\r\n"
        with RawConnection(server.port) as conn:
            conn.send(request)
            try:
                r = conn.read_response()
            except ConnectionError:
                continue  # refused at the protocol level without a response: also fine
            assert r.status in (400, 404), (target, r.status)
            assert SECRET not in r.body and b"root:" not in r.body, target
            assert str(app_dir).encode() not in r.body, target
    # Raw bytes the parser itself must refuse.
    for raw in [
        b"/static/\x00.env",
        b"/static/..\x5c..\x5csecret.txt\x7f",
        b"/static/\xc0\xae\xc0\xae/secret.txt",
    ]:
        with RawConnection(server.port) as conn:
            conn.send(b"GET " + raw + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                r = conn.read_response()
            except ConnectionError:
                continue
            assert r.status in (400, 404) and SECRET not in r.body
    # The worker survived all of it.
    r = exchange(server.port, b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.status == 200 and r.body == b"0123456789"


def test_static_e2e_symlinks_allowed_by_rule(start_bext: Start, app_dir: Path) -> None:
    server = start_bext(config(static_routes(rule="allow_symlinks = true\n"), app_dir=str(app_dir)))
    r = exchange(server.port, b"GET /static/link-out.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.status == 200 and r.body == SECRET
    # Still never a dotfile.
    assert exchange(server.port, b"GET /static/.env HTTP/1.1\r\nHost: t\r\n\r\n").status == 404


# -- large files (need sendfile support in the HTTP/1.1 connection) --------------------------------


def test_static_e2e_large_file_sendfile(start_bext: Start, app_dir: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (app_dir / "media" / "video.mp4").write_bytes(data)
    server = start_bext(
        config(static_routes('[static]\nmax_cached_file = "64KB"\n'), app_dir=str(app_dir))
    )
    with httpx.Client(base_url=server.base_url, headers={"accept-encoding": "identity"}) as client:
        for _ in range(2):  # keep-alive after a sendfile body
            r = client.get("/media/video.mp4")
            assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
            assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
        head = client.head("/media/video.mp4")
        assert head.headers["content-length"] == str(len(data)) and head.content == b""
        r = client.get("/media/video.mp4", headers={"range": "bytes=1000000-1999999"})
        assert r.status_code == 206 and r.content == data[1_000_000:2_000_000]
        r = client.get("/media/video.mp4", headers={"range": "bytes=0-9,-10"})
        assert r.status_code == 206 and data[:10] in r.content and data[-10:] in r.content
        assert client.get("/static/ten.txt").content == b"0123456789"


def test_static_e2e_file_sent_corked_then_uncorked(start_bext: Start, app_dir: Path) -> None:
    """A file above the memory cache goes out with the socket corked (head and body in
    full segments); the cork is lifted at its end, so a small response after it on the
    same connection is not held back for the kernel's 200 ms cork timeout."""
    body = os.urandom(600 * 1024)
    (app_dir / "staticfiles" / "large.bin").write_bytes(body)
    server = start_bext(config(static_routes(), app_dir=str(app_dir)))
    with RawConnection(server.port) as conn:
        for _ in range(3):
            conn.send(b"GET /static/large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            r = conn.read_response()
            assert r.status == 200 and r.body == body
            started = time.monotonic()
            conn.send(b"GET /static/ten.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            r = conn.read_response()
            assert r.status == 200 and r.body == b"0123456789"
            assert time.monotonic() - started < 0.15
