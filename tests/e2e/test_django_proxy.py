"""bext in front of the real demo Django app, under Gunicorn (sync) and Uvicorn (ASGI)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from demo.build import APP
from tests.support.django_app import AppServer, DemoSite, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess, config

sys.path.insert(0, str(APP))  # the example app's sources, for its pure helpers
from shop.payload import payload_sha256

MiB = 1024 * 1024


def bext_config(upstream_url: str, **server: object) -> str:
    return config(
        f"""
[upstreams.django]
keepalive = 16
connect_timeout_ms = 2000
read_timeout_ms = 30000
[[upstreams.django.servers]]
url = "{upstream_url}"

[[route_rules]]
pattern = "/**"
proxy = "django"
""",
        **server,
    )


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def site(
    request: pytest.FixtureRequest,
    demo_site: DemoSite,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, BextProcess]]:
    kind: str = request.param
    port = free_port()
    app = AppServer(kind, demo_site, f"127.0.0.1:{port}")
    workdir = tmp_path_factory.mktemp(f"bext-{kind}")
    server = BextProcess(workdir, bext_config(f"http://127.0.0.1:{port}", max_body_size="200MB"))
    try:
        app.wait_ready(f"http://127.0.0.1:{port}/health")
        server.start()
        yield kind, server
    finally:
        server.stop()
        app.stop()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def test_page_and_health(site: tuple[str, BextProcess]) -> None:
    _, server = site
    r = httpx.get(server.base_url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["server"].startswith("bext")
    assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}


def test_csrf_form_post_with_cookies_and_redirect(site: tuple[str, BextProcess]) -> None:
    _, server = site
    with httpx.Client(base_url=server.base_url) as client:
        token = csrf_token(client.get("/form/").text)
        r = client.post("/form/", data={"csrfmiddlewaretoken": token, "message": "héllo bext"})
        assert r.status_code == 302 and r.headers["location"] == "/form/?ok=1"
        page = client.get(r.headers["location"]).text
        assert "héllo bext" in page
        # Without the token Django refuses: bext passed cookies and fields faithfully.
        assert client.post("/form/", data={"message": "x"}).status_code == 403


def test_admin_login(site: tuple[str, BextProcess]) -> None:
    _, server = site
    with httpx.Client(base_url=server.base_url) as client:
        token = csrf_token(client.get("/admin/login/").text)
        r = client.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token,
                "username": "admin",
                "password": "admin",
                "next": "/admin/",
            },
        )
        assert r.status_code == 302 and r.headers["location"] == "/admin/"
        assert "Site administration" in client.get("/admin/").text


def test_client_ip_and_scheme_as_django_sees_them(site: tuple[str, BextProcess]) -> None:
    _, server = site
    spoofed = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Real-IP": "6.6.6.6"}
    who = httpx.get(server.base_url + "/whoami", headers=spoofed).json()
    assert who["x_forwarded_for"] == "127.0.0.1"  # the client cannot claim another address
    assert who["x_real_ip"] == "127.0.0.1"
    assert who["is_secure"] is False and who["scheme"] == "http"  # nor HTTPS
    assert who["host"] == f"127.0.0.1:{server.port}"


def test_streaming_view_first_chunk_before_last_is_produced(site: tuple[str, BextProcess]) -> None:
    _, server = site
    started = time.monotonic()
    arrivals: list[float] = []
    with httpx.stream("GET", server.base_url + "/stream", timeout=10) as r:
        for line in r.iter_lines():
            if line:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 10
    assert arrivals[0] < 1.0 and arrivals[-1] > 1.5  # produced 0.2 s apart, relayed as made


def test_server_sent_events_arrive_one_by_one(site: tuple[str, BextProcess]) -> None:
    _, server = site
    started = time.monotonic()
    stamps = []
    with httpx.stream("GET", server.base_url + "/events", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                stamps.append(time.monotonic() - started)
    assert len(stamps) == 5 and stamps[0] < 0.6 and stamps[-1] > 0.7


class RssWatch:
    """Samples the peak RSS of bext's workers while a transfer runs."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.baseline = max(p.memory_info().rss for p in self.procs)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, *(p.memory_info().rss for p in self.procs))

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_100mb_upload_byte_identical_with_bounded_memory(site: tuple[str, BextProcess]) -> None:
    kind, server = site
    if kind == "uvicorn":
        pytest.skip("one 100 MB run is enough; the uvicorn leg covers the other paths")
    size = 100 * MiB
    block = os.urandom(MiB)
    digest = hashlib.sha256(block * 100).hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(100):
            yield block

    with RssWatch(server.worker_pids()) as rss:
        r = httpx.post(server.base_url + "/upload", content=body(), timeout=120,
                       headers={"Content-Length": str(size)})  # fmt: skip
    assert r.json() == {"size": size, "sha256": digest}
    assert rss.peak - rss.baseline < 40 * MiB, (rss.baseline, rss.peak)


def test_100mb_download_byte_identical_with_bounded_memory(site: tuple[str, BextProcess]) -> None:
    kind, server = site
    if kind == "uvicorn":
        pytest.skip("one 100 MB run is enough; the uvicorn leg covers the other paths")
    size = 100 * MiB
    sha = hashlib.sha256()
    with (
        RssWatch(server.worker_pids()) as rss,
        httpx.stream("GET", server.base_url + "/download", params={"size": size}, timeout=120) as r,
    ):
        assert r.headers["content-length"] == str(size)
        for data in r.iter_bytes():
            sha.update(data)
            time.sleep(0.0005)  # a client slower than the upstream: bext spools to disk
    assert sha.hexdigest() == payload_sha256(size) == r.headers["x-content-sha256"]
    assert rss.peak - rss.baseline < 40 * MiB, (rss.baseline, rss.peak)


def test_websocket_echo(site: tuple[str, BextProcess]) -> None:
    kind, server = site
    if kind != "uvicorn":
        pytest.skip("WSGI cannot do WebSockets; Uvicorn serves them")
    import websockets

    async def talk() -> list[str | bytes]:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
            got: list[str | bytes] = []
            for message in ("hello", b"\x00\x01binary", "x" * 200_000):
                await ws.send(message)
                got.append(await ws.recv())
            return got

    assert asyncio.run(talk()) == ["hello", b"\x00\x01binary", "x" * 200_000]


def test_slow_uploader_does_not_block_a_single_sync_worker(
    demo_site: DemoSite, start_bext: object, tmp_path: Path
) -> None:
    port = free_port()
    app = start_gunicorn(demo_site, port)
    try:
        server = start_bext(bext_config(f"http://127.0.0.1:{port}"))  # type: ignore[operator]
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        for i in range(10):  # trickle: bext holds the body, Gunicorn never sees it yet
            slow.sendall(b"x" * 10)
            started = time.monotonic()
            assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
            assert time.monotonic() - started < 1.0, i
            time.sleep(0.1)
        slow.sendall(b"x" * 900)
        slow.settimeout(10)
        assert slow.recv(100).startswith(b"HTTP/1.1 200")
        slow.close()
    finally:
        app.stop()


def test_unix_socket_upstream(demo_site: DemoSite, start_bext: object, tmp_path: Path) -> None:
    sock_path = tmp_path / "gunicorn.sock"
    app = AppServer("gunicorn", demo_site, f"unix:{sock_path}", workers=1)
    try:
        deadline = time.monotonic() + 30
        while not sock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        app.wait_ready("http://localhost/health", httpx.HTTPTransport(uds=str(sock_path)))
        server = start_bext(bext_config(f"unix:{sock_path}"))  # type: ignore[operator]
        assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}
        assert httpx.get(server.base_url + "/whoami").json()["x_real_ip"] == "127.0.0.1"
    finally:
        app.stop()


def test_slow_downloader_does_not_hold_the_single_sync_worker(
    demo_site: DemoSite, start_bext: object
) -> None:
    """bext reads the response at full speed (spooling it) and frees Gunicorn at once."""
    port = free_port()
    app = start_gunicorn(demo_site, port)
    try:
        server = start_bext(bext_config(f"http://127.0.0.1:{port}"))  # type: ignore[operator]
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        slow.sendall(b"GET /download?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (20 * MiB))
        assert slow.recv(100).startswith(b"HTTP/1.1 200")  # reading, but very slowly
        time.sleep(1.0)  # Gunicorn has long handed all 20 MiB to bext by now
        started = time.monotonic()
        assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200
        assert time.monotonic() - started < 1.0
        slow.close()
    finally:
        app.stop()


def test_request_buffering_off_streams_the_upload(start_bext: object) -> None:
    from tests.support.fake_upstream import fake_upstream

    with fake_upstream() as upstream:
        text = bext_config(f"http://127.0.0.1:{upstream.port}").replace(
            'pattern = "/**"\nproxy = "django"',
            'pattern = "/**"\nproxy = "django"\nrequest_buffering = false',
        )
        server = start_bext(text)  # type: ignore[operator]
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabcde")
        deadline = time.monotonic() + 5
        while not upstream.heads_seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.heads_seen, "the upstream saw nothing while the body was incomplete"
        client.sendall(b"fghij")
        client.settimeout(5)
        assert client.recv(100).startswith(b"HTTP/1.1 200")
        client.close()
