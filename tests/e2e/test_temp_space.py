"""Proxy temp files under abuse: real `bext run` masters in front of the demo app under
Gunicorn, real clients (raw sockets, httpx over HTTP/1.1 and h2c, a frame-level HTTP/2
client), and the workers' open files read from /proc/PID/fd.

A request body over 1 MiB is spooled to a temp file and a response is read ahead of a slow
client into one (in ``server.temp_path``, anonymous: ``/proc`` shows them as
``<dir>/#inode (deleted)``). Whatever way an exchange ends, its files must be closed, the
worker's ``temp_budget`` must hold, and running out of room must slow a download down,
never cut it off, and refuse an upload with 503, never answer 500.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aioquic.h3.connection import ErrorCode
from hyperframe.frame import RstStreamFrame

from bext.http.message import Response
from bext.protocol.h3_limits import H3Limits
from bext.worker.context import Timeouts
from tests.h2.h2client import CANCEL, RawH2
from tests.support.django_app import AppServer, DemoSite, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.h3client import h3_connect, run
from tests.support.inproc_h3 import make_pki, serve_h3
from tests.support.server import BextProcess, config

MiB = 1024 * 1024
INITIAL_WINDOW = 0x4  # SETTINGS_INITIAL_WINDOW_SIZE

StartBext = Callable[..., BextProcess]


@pytest.fixture(scope="module")
def app(demo_site: DemoSite) -> Iterator[AppServer]:
    """The demo under Gunicorn with two sync workers (``/download``, ``/slow``)."""
    server = start_gunicorn(demo_site, free_port(), workers=2)
    try:
        yield server
    finally:
        server.stop()


def app_url(app: AppServer) -> str:
    return f"http://{app.bind}"


def site(app: AppServer, temp: Path, **server: object) -> str:
    temp.mkdir(exist_ok=True)
    return config(
        f"""
[upstreams.django]
[[upstreams.django.servers]]
url = "{app_url(app)}"

[[route_rules]]
pattern = "/**"
proxy = "django"
""",
        temp_path=str(temp),
        **server,
    )


def temp_files(server: BextProcess, directory: Path) -> list[tuple[int, str, int]]:
    """(worker pid, link, size) of every open, unlinked file in ``directory``."""
    found = []
    for pid in server.worker_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            link = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(link)
                size = os.stat(link).st_size
            except OSError:
                continue  # closed meanwhile
            if target.startswith(f"{directory}/") and target.endswith("(deleted)"):
                found.append((pid, target, size))
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def no_temp_files_left(server: BextProcess, directory: Path, timeout: float = 10.0) -> None:
    """Every temp file gets closed, and stays closed for a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not temp_files(server, directory):
            time.sleep(0.5)
            if not temp_files(server, directory):
                return
        time.sleep(0.1)
    raise AssertionError(f"temp files still open: {temp_files(server, directory)}")


def raw_socket(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with RST, as a client that crashed or lost its network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        assert piece, data
        data += piece
    return data


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def windowless_download(port: int, target: bytes) -> RawH2:
    """An h2c client that asks for ``target`` with a stream window of 0 and reads the head."""
    conn = RawH2(port, settings={INITIAL_WINDOW: 0}, timeout=10)
    conn.request(1, target)
    reply = conn.reply(1)
    conn.read_until(lambda: bool(reply.headers), window=False)
    assert reply.status == 200
    return conn


# -- request spools -------------------------------------------------------------------------


def test_aborted_uploads_leave_no_open_temp_file(
    app: AppServer, start_bext: StartBext, tmp_path: Path
) -> None:
    """10 uploads of 5 MB that break off after 3 MB (each once its spool is on disk): with
    Content-Length, chunked, and over h2c; by FIN or by RST."""
    temp = tmp_path / "tmp"
    server = start_bext(site(app, temp))
    piece = os.urandom(64 * 1024)
    size = 5 * MiB

    def spooling() -> bool:
        return len(temp_files(server, temp)) >= 1

    for i in range(10):
        kind = ("length", "chunked", "h2")[i % 3]
        if kind == "h2":

            def body() -> Iterator[bytes]:
                for _ in range(48):  # 3 MB
                    yield piece
                wait_for(spooling, 10, "the upload to be spooled to disk")
                raise RuntimeError("client gives up")

            with (
                httpx.Client(http1=False, http2=True, timeout=10) as client,
                pytest.raises(RuntimeError, match="client gives up"),
            ):
                client.post(
                    server.base_url + "/upload",
                    content=body(),
                    headers={"content-length": str(size)},
                )
        else:
            sock = raw_socket(server.port)
            framing = (
                b"Content-Length: %d" % size if kind == "length" else b"Transfer-Encoding: chunked"
            )
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\n%b\r\n\r\n" % framing)
            for _ in range(48):
                sock.sendall(piece if kind == "length" else chunk(piece))
            wait_for(spooling, 10, "the upload to be spooled to disk")
            if i % 2:
                reset(sock)
            else:
                sock.close()
        no_temp_files_left(server, temp)
    # The workers still serve uploads, spooled and all.
    data = os.urandom(3 * MiB)
    response = httpx.post(server.base_url + "/upload", content=data, timeout=30)
    assert response.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    no_temp_files_left(server, temp)


def test_upload_refused_with_413_part_way_closes_its_spool(
    app: AppServer, start_bext: StartBext, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    server = start_bext(site(app, temp, max_body_size="4MB"))
    piece = os.urandom(64 * 1024)
    for _ in range(3):
        sock = raw_socket(server.port)
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(32):  # 2 MB: on disk by now
            sock.sendall(chunk(piece))
        wait_for(lambda: bool(temp_files(server, temp)), 10, "the upload to be spooled")
        with contextlib.suppress(OSError):  # bext stops reading once it has answered
            for _ in range(48):
                sock.sendall(chunk(piece))
        assert read_head(sock).startswith(b"HTTP/1.1 413 ")
        sock.close()
        no_temp_files_left(server, temp)


# -- response read-ahead -----------------------------------------------------------------------


def test_disconnected_slow_downloads_leave_no_open_temp_file(
    app: AppServer, start_bext: StartBext, tmp_path: Path
) -> None:
    """10 downloads whose clients go away: 4 HTTP/1.1 clients that stopped reading and 3
    HTTP/2 clients whose window stayed shut, each once bext had read ahead to disk, and 3
    that left before the (busy) upstream answered at all."""
    temp = tmp_path / "tmp"
    server = start_bext(site(app, temp))
    size = 20 * MiB
    target = b"/download?size=%d" % size

    stalled: list[socket.socket] = []
    windowless: list[RawH2] = []
    try:
        for _ in range(4):
            sock = raw_socket(server.port, rcvbuf=4096)
            sock.sendall(b"GET %b HTTP/1.1\r\nHost: localhost\r\n\r\n" % target)
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
            stalled.append(sock)
        for _ in range(3):
            windowless.append(windowless_download(server.port, target))
        # Each one has its read-ahead file (the positive control for what follows).
        wait_for(lambda: len(temp_files(server, temp)) >= 7, 20, "7 read-ahead files")
    finally:
        for index, sock in enumerate(stalled):
            if index % 2:
                reset(sock)
            else:
                sock.close()
        for conn in windowless:
            conn.close()
    no_temp_files_left(server, temp)

    # Both Gunicorn workers busy: these clients give up before any response head.
    busy = [
        threading.Thread(
            target=httpx.get, args=(app_url(app) + "/slow?seconds=3",), kwargs={"timeout": 10}
        )
        for _ in range(2)
    ]
    for thread in busy:
        thread.start()
    time.sleep(0.5)
    impatient = [raw_socket(server.port) for _ in range(3)]
    for sock in impatient:
        sock.sendall(b"GET %b HTTP/1.1\r\nHost: localhost\r\n\r\n" % target)
    time.sleep(0.5)
    for sock in impatient:
        reset(sock)  # a FIN would be a half-close: bext would still answer, to no one
    for thread in busy:
        thread.join(15)
    # This one queues in Gunicorn behind whatever bext still asked of it: once it is
    # answered, nothing the impatient clients asked for is still to come.
    for _ in range(2):
        response = httpx.get(server.base_url + "/download?size=1000", timeout=30)
        assert response.status_code == 200
    no_temp_files_left(server, temp)


def test_zero_window_http2_stream_is_reset_after_send_timeout(
    app: AppServer, start_bext: StartBext, tmp_path: Path
) -> None:
    """An h2c client opens a stream with a window of 0 and then says nothing at all: the
    stream is reset after send_timeout and its read-ahead file closed."""
    temp = tmp_path / "tmp"
    server = start_bext(site(app, temp, send_timeout="1s"))
    seen = 0
    with RawH2(server.port, settings={INITIAL_WINDOW: 0}, timeout=10) as conn:
        conn.request(1, b"/download?size=%d" % (8 * MiB))
        started = time.monotonic()
        reply = conn.reply(1)
        while reply.reset is None:
            assert time.monotonic() - started < 10, "the stream was never reset"
            with contextlib.suppress(TimeoutError):
                frame = conn.read_frame(0.1)
                assert frame is not None, "connection closed instead of a stream reset"
            seen = max(seen, len(temp_files(server, temp)))
        elapsed = time.monotonic() - started
        assert reply.status == 200 and reply.body == b""
        assert reply.reset == CANCEL and 0.9 < elapsed < 5, elapsed
        assert any(isinstance(f, RstStreamFrame) for f in reply.frames)
        assert seen == 1  # it had read ahead to disk before it was reset
        no_temp_files_left(server, temp)
        # The connection itself lives on: another stream gets its answer.
        conn.request(3, b"/health")
        conn.window_update(3, 1 << 16)
        response = conn.response(3)
        assert response.status == 200 and b"ok" in response.body


def test_http3_stream_with_shut_window_is_reset_after_send_timeout(tmp_path: Path) -> None:
    """HTTP/3's counterpart needed no change: a stream the client grants no credit holds
    at most ``send_buffer`` in QUIC, then waits (``_drain`` starts the send timer); after
    send_timeout it is reset and its response stream released. Kept as the guard."""
    closed = threading.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"z" * (16 * 1024)
        finally:
            closed.set()

    pki = make_pki(tmp_path)
    elapsed = [0.0]

    async def main(port: int) -> None:
        async with h3_connect(port, pki.ca, max_stream_data=64 * 1024) as client:
            client.hold_credit()
            started = time.monotonic()
            response = await client.response(client.open("GET", "/endless"))
            elapsed[0] = time.monotonic() - started
            assert response.status == 200 and response.reset == ErrorCode.H3_REQUEST_CANCELLED

    limits = H3Limits(send_buffer=128 * 1024)
    with serve_h3(
        lambda r: Response(200, [], stream=endless()), pki, limits, Timeouts(send=0.5)
    ) as server:
        run(main(server.port))
        assert closed.wait(5)
    assert 0.4 < elapsed[0] < 5, elapsed[0]


# -- no room: budget and full disk ------------------------------------------------------------------


def slow_download(url: str, size: int, results: list[tuple[int, bool]]) -> None:
    """A client that reads 64 KiB every 20 ms; records (bytes, digest matched)."""
    with httpx.stream("GET", f"{url}/download?size={size}", timeout=60) as response:
        assert response.status_code == 200
        digest = hashlib.sha256()
        received = 0
        for piece in response.iter_raw(64 * 1024):
            digest.update(piece)
            received += len(piece)
            time.sleep(0.02)
        results.append((received, digest.hexdigest() == response.headers["x-content-sha256"]))


def run_slow_downloads(
    url: str, size: int, count: int, watch: Callable[[], None]
) -> list[tuple[int, bool]]:
    results: list[tuple[int, bool]] = []
    threads = [
        threading.Thread(target=slow_download, args=(url, size, results)) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        watch()
        time.sleep(0.05)
    for thread in threads:
        thread.join(5)
    return results


def test_tiny_temp_budget_refuses_uploads_and_slows_downloads(
    app: AppServer, start_bext: StartBext, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    server = start_bext(site(app, temp, temp_budget="2MB", workers=1))
    small = os.urandom(1536 * 1024)  # spooled to disk, within the budget
    response = httpx.post(server.base_url + "/upload", content=small, timeout=30)
    assert response.json()["sha256"] == hashlib.sha256(small).hexdigest()

    big = os.urandom(5 * MiB)
    refused = httpx.post(server.base_url + "/upload", content=big, timeout=30)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"

    def chunked() -> Iterator[bytes]:  # no declared length: refused half way
        for start in range(0, len(big), 256 * 1024):
            yield big[start : start + 256 * 1024]

    refused = httpx.post(server.base_url + "/upload", content=chunked(), timeout=30)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"

    # Three slow clients, 8 MB each: bext may read only 2 MB ahead on disk in all, so it
    # holds Gunicorn back instead, and every byte still arrives.
    peak = [0]

    def watch() -> None:
        peak[0] = max(peak[0], sum(size for _, _, size in temp_files(server, temp)))

    size = 8 * MiB
    results = run_slow_downloads(server.base_url, size, 3, watch)
    assert results == [(size, True)] * 3
    assert 0 < peak[0] <= 2 * MiB, peak[0]
    log = server.stderr()
    assert "server.temp_budget (2MiB per worker) is used up: uploads that need disk" in log
    assert "server.temp_budget (2MiB per worker) is used up: response read-ahead waits" in log
    assert "Traceback" not in log
    no_temp_files_left(server, temp)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a temp directory that really runs out of space (needs root)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        timeout=10,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


def test_full_disk_refuses_uploads_and_slows_downloads(
    app: AppServer, full_disk: Path, start_bext: StartBext
) -> None:
    # (full_disk first: it is unmounted after bext has stopped)
    server = start_bext(site(app, full_disk, workers=1))
    big = os.urandom(5 * MiB)
    refused = httpx.post(server.base_url + "/upload", content=big, timeout=30)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"

    size = 8 * MiB
    results = run_slow_downloads(server.base_url, size, 2, lambda: None)
    assert results == [(size, True)] * 2
    log = server.stderr()
    assert f"server.temp_path {full_disk}: no space left on device" in log
    assert "Traceback" not in log and "invalid response from upstream" not in log
    no_temp_files_left(server, full_disk)


# -- configuration -------------------------------------------------------------------------------


def bext_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bext", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"missing"', 'server.temp_path: "{dir}/missing" is not an existing directory'),
        ('"tmp\\u0000x"', "server.temp_path: expected a directory path without control"),
        ('"tmp\\nx"', "server.temp_path: expected a directory path without control"),
        ("42", "server.temp_path: expected a string, got 42 (an integer)"),
    ],
)
def test_check_refuses_an_unusable_temp_path(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "bext.config.toml"
    path.write_text(f"[server]\ntemp_path = {value}\n")
    result = bext_check(path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert message.format(dir=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr


def test_check_accepts_the_temp_keys(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    path = tmp_path / "bext.config.toml"
    path.write_text(
        '[server]\ntemp_path = "tmp"\ntemp_budget = "64MB"\n'
        "[upstreams.app]\nmax_temp_file_size = 0\n[[upstreams.app.servers]]\n"
        'url = "http://127.0.0.1:8000"\n[[route_rules]]\npattern = "/**"\nproxy = "app"\n'
    )
    result = bext_check(path)
    assert result.returncode == 0, result.stderr
