"""The HTTP/1.1 quick lane (``Pipeline.quick``) answers exactly as the full path would.

Every request below goes through a real :class:`H1Connection` over a real pipeline built
from a config, twice: once with the quick lane, once without (``ctx.quick = None``). The
bytes on the wire (``Date`` aside), the counters (status, bytes, rule) and the access log
lines (time, id and duration aside) must be the same, and the lane must actually have
answered the requests it is meant for, so this test fails if the lane either differs or
is never taken.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hpack import Decoder, Encoder

from bext.config import Config
from bext.config.load import parse_config
from bext.observe.accesslog import AccessLog
from bext.protocol.h2_guard import PREFACE as H2_PREFACE
from bext.shm.counters import NullCounters
from bext.worker import main as worker_main
from bext.worker.context import WorkerContext
from bext.worker.h1_connection import H1Connection
from bext.worker.h2_connection import H2Connection
from bext.worker.pipeline import Pipeline

BODY = "quick " * 200

CONFIG = f"""
[server]
port = 0
host = "127.0.0.1"

[limits.slow]
rate = "1r/m"
burst = 100

[[route_rules]]
pattern = "/r"
respond = {{ status = 200, body = "{BODY}", content_type = "text/plain" }}
headers = {{ "X-Rule" = "r" }}

[[route_rules]]
pattern = "/empty"
respond = 204

[[route_rules]]
pattern = "/early"
respond = 103

[[route_rules]]
pattern = "/h"
host = "example.com"
respond = {{ status = 200, body = "for example.com" }}

[[route_rules]]
pattern = "/h"
respond = {{ status = 200, body = "for everyone else" }}

[[route_rules]]
pattern = "/limited"
respond = {{ status = 200, body = "limited" }}
limit = "slow"

[[route_rules]]
pattern = "/denied"
respond = {{ status = 200, body = "denied" }}
deny = ["127.0.0.1"]

[cache]
enabled = true
path = "{{cache}}"

[upstreams.app]
servers = ["http://127.0.0.1:{{port}}"]

[[route_rules]]
pattern = "/cached/**"
proxy = "app"
cache = true

[[route_rules]]
pattern = "/files/**"
render = "static"
root = "{{root}}"
index = "index.html"
"""

# (name, raw request, answered by the quick lane on its second sending)
REQUESTS: list[tuple[str, bytes, bool]] = [
    ("get", b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("head", b"HEAD /r HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("gzip", b"GET /r HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n", True),
    ("br", b"GET /r HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br, gzip\r\n\r\n", True),
    ("http10", b"GET /r HTTP/1.0\r\n\r\n", True),
    ("http10 keep-alive", b"GET /r HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    ("close", b"GET /r HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", True),
    ("query", b"GET /r?x=1&y HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("dot segment", b"GET /./r HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("escaped", b"GET /%72 HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("double slash", b"GET //r HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("climbing", b"GET /../r HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("bad escape", b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("encoded slash", b"GET /files%2Fa.txt HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("delete", b"DELETE /r HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("post", b"POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", False),
    ("204", b"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("103", b"GET /early HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("host rule", b"GET /h HTTP/1.1\r\nHost: example.com\r\n\r\n", True),
    ("host rule, port", b"GET /h HTTP/1.1\r\nHost: example.com:80\r\n\r\n", True),
    ("other host", b"GET /h HTTP/1.1\r\nHost: example.org\r\n\r\n", True),
    ("absolute form", b"GET http://example.com/h HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ("rate limit", b"GET /limited HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("access rules", b"GET /denied HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("no route", b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("admin", b"GET /__bext/nothing HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("file", b"GET /files/a.txt HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("file gzip", b"GET /files/a.txt HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n", True),
    ("file head", b"HEAD /files/a.txt HTTP/1.1\r\nHost: a\r\n\r\n", True),
    (
        "file with .gz",
        b"GET /files/b.css HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n",
        True,
    ),
    ("file, no .gz", b"GET /files/b.css HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("file post", b"POST /files/a.txt HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("binary", b"GET /files/c.bin HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("index", b"GET /files/ HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("directory", b"GET /files/sub HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("large file", b"GET /files/large.txt HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("missing", b"GET /files/missing HTTP/1.1\r\nHost: a\r\n\r\n", False),
    (
        "if-none-match",
        b'GET /files/a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: "x", *\r\n\r\n',
        False,
    ),
    ("range", b"GET /files/a.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\n", False),
    ("hit", b"GET /cached/page HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("hit head", b"HEAD /cached/page HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("hit gzip", b"GET /cached/page HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n", True),
    ("hit http10", b"GET /cached/page HTTP/1.0\r\n\r\n", True),
    ("hit query", b"GET /cached/page?a=1 HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("hit other host", b"GET /cached/page HTTP/1.1\r\nHost: b:80\r\n\r\n", True),
    ("hit of a 301", b"GET /cached/redirect HTTP/1.1\r\nHost: a\r\n\r\n", True),
    ("vary", b"GET /cached/vary HTTP/1.1\r\nHost: a\r\nAccept-Language: de\r\n\r\n", True),
    ("no-cache entry", b"GET /cached/nocache HTTP/1.1\r\nHost: a\r\n\r\n", False),
    ("private", b"GET /cached/private HTTP/1.1\r\nHost: a\r\n\r\n", False),
    (
        "request no-cache",
        b"GET /cached/page HTTP/1.1\r\nHost: a\r\nCache-Control: no-cache\r\n\r\n",
        False,
    ),
    (
        "request max-stale",
        b"GET /cached/page HTTP/1.1\r\nHost: a\r\nCache-Control: max-stale=5\r\n\r\n",
        False,
    ),
    ("pragma", b"GET /cached/page HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", False),
    ("authorization", b"GET /cached/page HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\n\r\n", False),
    (
        "hit if-none-match",
        b'GET /cached/page HTTP/1.1\r\nHost: a\r\nIf-None-Match: "x"\r\n\r\n',
        False,
    ),
    ("hit range", b"GET /cached/page HTTP/1.1\r\nHost: a\r\nRange: bytes=0-3\r\n\r\n", False),
    (
        "websocket",
        b"GET /cached/page HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        False,
    ),
    ("purge", b"PURGE /cached/page HTTP/1.1\r\nHost: a\r\n\r\n", False),
    (
        "twice accept-encoding",
        b"GET /files/b.css HTTP/1.1\r\nHost: a\r\nAccept-Encoding: x\r\n"
        b"Accept-Encoding: gzip\r\n\r\n",
        False,
    ),
]


class Transport:
    """Collects what the connection writes; the connection closes it, or not."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        # As on TLS ("sslcontext"): files are read in chunks, never sendfile'd to a socket.
        extra = {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 80), "sslcontext": 1}
        return extra.get(name, default)

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def write_eof(self) -> None: ...
    def set_write_buffer_limits(self, *args: object) -> None: ...

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 0


class Counted(NullCounters):
    def __init__(self) -> None:
        super().__init__()
        self.responses: list[tuple[int | str, int, int]] = []

    def response(self, status: int, sent: int, route: int = -1, duration: float = 0.0) -> None:
        self.responses.append((status, sent, route))

    def cache(self, outcome: str) -> None:
        self.responses.append((outcome, 0, 0))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = tmp_path / "www"
    (files / "sub").mkdir(parents=True)
    (files / "a.txt").write_text("text file " * 120)
    (files / "b.css").write_text("body { color: red } " * 60)
    (files / "b.css.gz").write_bytes(b"\x1f\x8b precompressed stand-in")
    (files / "c.bin").write_bytes(os.urandom(1024))
    (files / "index.html").write_text("<h1>index</h1>" * 20)
    (files / "large.txt").write_text("large " * 100_000)
    return files


class Upstream(asyncio.Protocol):
    """The app behind the cache rule: a fixed page per path, keep-alive."""

    PAGES = {
        b"/cached/page": b"Cache-Control: public, max-age=600\r\nContent-Type: text/html\r\n",
        b"/cached/vary": b"Cache-Control: max-age=600\r\nVary: Accept-Language\r\n",
        b"/cached/nocache": b"Cache-Control: no-cache, max-age=600\r\n",
        b"/cached/private": b"Cache-Control: private, max-age=600\r\n",
        b"/cached/redirect": b"Cache-Control: max-age=600\r\nLocation: /cached/page\r\n",
    }

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            path = head.split(b" ")[1].partition(b"?")[0]
            status = b"301 Moved Permanently" if path.endswith(b"redirect") else b"200 OK"
            body = b"<p>cached page</p>" * 60
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nDate: Sat, 05 Dec 2026 12:00:00 GMT\r\n"
                + self.PAGES.get(path, b"")
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )  # fmt: skip


@pytest.fixture(params=["compression", "no compression"])
def built(
    request: pytest.FixtureRequest, root: Path, tmp_path: Path
) -> Iterator[tuple[Config, Pipeline, Counted]]:
    """The pipeline with and without the compression phase (the lane's answer then comes
    from the handler alone), with its upstream listening on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    text = CONFIG.replace("{root}", str(root)).replace("{port}", str(sock.getsockname()[1]))
    text = text.replace("{cache}", str(tmp_path / "cache"))
    if request.param == "no compression":
        text = "[compression]\nenabled = false\n" + text
    config = parse_config(tomllib.loads(text), base_dir=tmp_path)
    pipeline = Pipeline(config)
    counters = Counted()
    pipeline.bind_counters(counters)
    pipeline.upstream_socket = sock  # type: ignore[attr-defined]
    yield config, pipeline, counters
    pipeline.close()
    sock.close()


def _context(
    built: tuple[Config, Pipeline, Counted], quick: bool, log: AccessLog
) -> tuple[WorkerContext, list[int]]:
    """A worker-built context with the quick lane (counting the requests it answered, in
    the returned one-item list) or without it; the counters start empty."""
    config, pipeline, counters = built
    counters.responses.clear()
    ctx = worker_main.build_context(config, pipeline, log, counters)
    taken = [0]
    lane = ctx.quick
    assert lane is not None

    def counting(*args: Any) -> Any:
        answer = lane(*args)
        taken[0] += answer is not None
        return answer

    ctx.quick = counting if quick else None
    return ctx, taken


async def serve(
    built: tuple[Config, Pipeline, Counted], quick: bool, log: AccessLog, raw: list[bytes]
) -> tuple[bytes, bool, list[tuple[int | str, int, int]], int]:
    """Feed ``raw`` (one read each, each answered before the next) to one connection of a
    worker-built context: what it wrote, whether it closed, what it counted, and how many
    requests the quick lane answered."""
    ctx, taken = _context(built, quick, log)
    conn = H1Connection(ctx)
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for data in raw:
        if transport.closed:
            break
        conn.data_received(data)
        for _ in range(2000):  # until answered (a miss goes upstream), 2 s at most
            if conn._current is None and not conn._queue:
                break
            await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)  # what follows a response (a cache store) settles
    conn.connection_lost(None)
    return bytes(transport.out), transport.closed, list(built[2].responses), taken[0]


def _stable(out: bytes) -> bytes:
    """The response bytes without what changes with the clock (Date, Age, the ttl) or
    with every request (a proxied response's X-Request-ID)."""
    out = re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", out)
    out = re.sub(rb"Age: \d+", b"Age: -", out)
    out = re.sub(rb"X-Request-ID: [0-9a-f]+", b"X-Request-ID: -", out)  # a new one each time
    return re.sub(rb"ttl=-?\d+", b"ttl=-", out)


def _logged(path: Path) -> list[str]:
    """The log's lines without what differs between any two requests (time, id, trace id,
    durations)."""
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return [
        re.sub(
            r"\[[^]]*\]|(id|trace|upstream_time)=\S+| \d+\.\d{3}(?= |$)"
            r'|"(time|id|trace|upstream_time|request_time)": [^,}]+',
            "-",
            line,
        )
        for line in lines
    ]


@pytest.mark.parametrize(("name", "raw", "expect_quick"), REQUESTS, ids=[r[0] for r in REQUESTS])
@pytest.mark.parametrize("log_format", ["off", "combined", "json"])
def test_quick_lane_answers_as_the_full_path(
    built: tuple[Config, Pipeline, Counted],
    tmp_path: Path,
    name: str,
    raw: bytes,
    expect_quick: bool,
    log_format: str,
) -> None:
    log_path = tmp_path / "access.log"
    upstream_socket = built[1].upstream_socket  # type: ignore[attr-defined]

    async def both() -> list[tuple[bytes, bool, list[tuple[int | str, int, int]], list[str], int]]:
        upstream = await asyncio.get_running_loop().create_server(Upstream, sock=upstream_socket)
        # A first request fills the caches (a cache miss goes upstream and is stored).
        await serve(built, False, AccessLog("off"), [raw])
        results = []
        for quick in (False, True):
            log = AccessLog("off" if log_format == "off" else str(log_path), log_format)
            # On one connection: one request per read, then two in one read (pipelined).
            out, closed, counted, taken = await serve(built, quick, log, [raw, raw, raw + raw])
            log.close()
            results.append((_stable(out), closed, counted, _logged(log_path), taken))
        upstream.close()
        return results

    full_run, quick_run = asyncio.run(both())
    assert quick_run[:4] == full_run[:4]
    if expect_quick:
        assert full_run[1] or full_run[0].count(b"HTTP/1.") == 4, "every request answered"
    assert (quick_run[4] > 0) == expect_quick, f"the quick lane answered {quick_run[4]}"


@pytest.mark.parametrize("server_timing", [False, True])
def test_another_response_phase_closes_the_lane(tmp_path: Path, server_timing: bool) -> None:
    """Server-Timing is a response phase the lane cannot run: with it, no quick answers."""
    text = f"""
[metrics]
server_timing = {"true" if server_timing else "false"}

[[route_rules]]
pattern = "/r"
respond = {{ status = 200, body = "{BODY}", content_type = "text/plain" }}
"""
    pipeline = Pipeline(parse_config(tomllib.loads(text), base_dir=tmp_path))
    answer = pipeline.quick("GET", "a", b"/r", "http", [(b"host", b"a")])
    if server_timing:
        assert answer is None and pipeline.quick_lane is None
    else:
        assert answer is not None and answer[0].body == BODY.encode()
        assert pipeline.quick_lane is not None


def test_no_lane_without_quick_answers(tmp_path: Path) -> None:
    """A configuration whose rules all need the full path (here: a proxy without a cache)
    has no lane at all: connections never ask, so proxied requests pay nothing for it."""
    text = """
[upstreams.app]
servers = ["http://127.0.0.1:9"]

[[route_rules]]
pattern = "/**"
proxy = "app"
"""
    config = parse_config(tomllib.loads(text), base_dir=tmp_path)
    pipeline = Pipeline(config)
    assert pipeline.quick_lane is None
    assert worker_main.build_context(config, pipeline, AccessLog("off")).quick is None


def test_long_targets_take_the_full_path_and_are_not_remembered(tmp_path: Path) -> None:
    text = f"""
[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "{BODY}", content_type = "text/plain" }}
"""
    pipeline = Pipeline(parse_config(tomllib.loads(text), base_dir=tmp_path))
    fields = [(b"host", b"a")]
    for length in (512, 513, 8000):
        target = b"/" + b"x" * (length - 1)
        answer = pipeline.quick("GET", "a", target, "http", fields)
        assert (answer is not None) == (length <= 512)
    assert [key[1] for key in pipeline._lanes] == [b"/" + b"x" * 511]


# -- HTTP/2: the same lane, offered by the exchange ------------------------------------------

_FRAME = struct.Struct(">HBBBL")  # length (24 bits, as 16 + 8), type, flags, stream id
_DATA, _HEADERS, _SETTINGS, _WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x8
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return _FRAME.pack(len(payload) >> 8, len(payload) & 0xFF, kind, flags, sid) + payload


def _as_h2(raw: bytes) -> list[tuple[bytes, bytes]] | None:
    """``raw`` (an HTTP/1.1 request of :data:`REQUESTS`) as HTTP/2 fields, or None where
    HTTP/2 has no such request (HTTP/1.0, a body, connection-specific fields, a target
    that is not origin-form)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *lines = head.split(b"\r\n")
    method, target, version = line.split(b" ")
    if version != b"HTTP/1.1" or body or target[:1] != b"/":
        return None
    fields = [
        (name.lower(), value.strip()) for name, _, value in (x.partition(b":") for x in lines)
    ]
    if any(name in (b"connection", b"upgrade", b"content-length") for name, _ in fields):
        return None
    host = next(value for name, value in fields if name == b"host")
    pseudo = [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", host),
        (b":path", target),
    ]
    return pseudo + [(name, value) for name, value in fields if name != b"host"]


def _h2_responses(out: bytes) -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
    """(stream id, fields without date, body) of every stream answered in ``out``."""
    decoder = Decoder()
    streams: dict[int, tuple[list[tuple[bytes, bytes]], bytearray]] = {}
    pos = 0
    while pos + 9 <= len(out):
        hi, lo, kind, _, sid = _FRAME.unpack_from(out, pos)
        payload = out[pos + 9 : pos + 9 + (hi << 8 | lo)]
        pos += 9 + len(payload)
        if kind == _HEADERS:
            fields = [(bytes(n), bytes(v)) for n, v in decoder.decode(payload, raw=True)]
            streams[sid] = ([f for f in fields if f[0] != b"date"], bytearray())
        elif kind == _DATA and sid in streams:
            streams[sid][1].extend(payload)
    return [(sid, fields, bytes(body)) for sid, (fields, body) in sorted(streams.items())]


def _stable_field(field: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """A response field without what changes with the clock or every request."""
    name, value = field
    if name in (b"age", b"x-request-id"):
        return name, b"-"
    return name, re.sub(rb"ttl=-?\d+", b"ttl=-", value)


H2_REQUESTS = [(name, fields, quick) for name, raw, quick in REQUESTS if (fields := _as_h2(raw))]


@pytest.mark.parametrize(
    ("name", "fields", "expect_quick"), H2_REQUESTS, ids=[r[0] for r in H2_REQUESTS]
)
def test_quick_lane_answers_as_the_full_path_on_http2(
    built: tuple[Config, Pipeline, Counted],
    tmp_path: Path,
    name: str,
    fields: list[tuple[bytes, bytes]],
    expect_quick: bool,
) -> None:
    """HTTP/2 builds its Request first; the exchange offers it to the lane. Answers,
    counters and access log lines are those of the full path."""
    _, pipeline, counters = built
    log_path = tmp_path / "access.log"
    upstream_socket = pipeline.upstream_socket  # type: ignore[attr-defined]

    async def serve_h2(quick: bool, log: AccessLog, sends: int) -> tuple[Any, ...]:
        ctx, taken = _context(built, quick, log)
        conn = H2Connection(ctx)
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(
            H2_PREFACE  # windows as large as they go: no response waits for WINDOW_UPDATE
            + _frame(_SETTINGS, 0, 0, struct.pack(">HL", 0x4, 2**31 - 1))
            + _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">L", 2**31 - 1 - 65535))
            + _frame(_SETTINGS, _ACK, 0, b"")
        )
        encoder = Encoder()
        for index in range(sends):
            block = encoder.encode(fields)
            conn.data_received(_frame(_HEADERS, _END_HEADERS | _END_STREAM, 2 * index + 1, block))
            for _ in range(2000):  # until answered (a miss goes upstream), 2 s at most
                if not conn._streams:
                    break
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        conn.connection_lost(None)
        return _h2_responses(bytes(transport.out)), list(counters.responses), taken[0]

    async def both() -> list[tuple[Any, ...]]:
        upstream = await asyncio.get_running_loop().create_server(Upstream, sock=upstream_socket)
        await serve_h2(False, AccessLog("off"), 1)  # fills the caches
        results = []
        for quick in (False, True):
            log = AccessLog(str(log_path), "combined")
            answered, counted, taken = await serve_h2(quick, log, 3)
            log.close()
            stable = [
                (sid, [_stable_field(f) for f in fields], body) for sid, fields, body in answered
            ]
            results.append((stable, counted, _logged(log_path), taken))
        upstream.close()
        return results

    full_run, quick_run = asyncio.run(both())
    assert quick_run[:3] == full_run[:3]
    assert len(full_run[0]) == 3, "every request answered"
    assert (quick_run[3] > 0) == expect_quick, f"the quick lane answered {quick_run[3]}"
