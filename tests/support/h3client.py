"""A small HTTP/3 client for tests, built on aioquic's client side.

``h3_connect`` opens a connection (``aioquic.asyncio.client.connect`` with ALPN h3 and the
test CA); ``client.request(...)`` sends one request and returns the whole response. Lower
level calls (``open``/``send``/``cancel``/``response``) let a test reset streams, send a
body slowly or read a response as it arrives. The client also watches the server's control
stream for GOAWAY, which aioquic's HTTP/3 layer reads but does not report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError  # type: ignore[attr-defined]
from aioquic.h3.connection import ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset
from aioquic.quic.logger import QuicLogger

Headers = list[tuple[bytes, bytes]]
T = TypeVar("T")

GOAWAY = 0x7


class H3Response:
    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.status = 0
        self.headers: Headers = []
        self.interim: list[Headers] = []
        self.trailers: Headers = []
        self.chunks: list[bytes] = []
        self.received = 0
        self.reset: int | None = None
        """The error code when the server reset the stream instead of ending it."""
        self.done: asyncio.Future[H3Response] = asyncio.get_running_loop().create_future()
        self.sink: Callable[[bytes], None] | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<H3Response {self.status} stream {self.stream_id} reset={self.reset}>"


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.responses: dict[int, H3Response] = {}
        self.goaway: list[int] = []
        self.terminated: ConnectionTerminated | None = None
        self._uni: dict[int, bytes] = {}
        self._other_uni: set[int] = set()
        self._head_streams: set[int] = set()
        check = self.h3._check_content_length

        def check_content_length(stream: Any) -> None:
            # aioquic's client does not know that a response to HEAD has no content
            # whatever its content-length says (RFC 9110 §9.3.2); real clients do.
            if stream.stream_id not in self._head_streams:
                check(stream)

        self.h3._check_content_length = check_content_length  # type: ignore[method-assign]

    # -- requests -------------------------------------------------------------------------------

    def open(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        authority: str = "localhost",
        end_stream: bool = True,
        pseudo: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """Send a request head; returns the stream id. ``pseudo`` replaces the pseudo-fields."""
        stream_id = self._quic.get_next_available_stream_id()
        if pseudo is None:
            pseudo = [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ]
        self.responses[stream_id] = H3Response(stream_id)
        if method == "HEAD":
            self._head_streams.add(stream_id)
        self.h3.send_headers(stream_id, [*pseudo, *headers], end_stream=end_stream)
        self.transmit()
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.h3.send_data(stream_id, data, end_stream)
        self.transmit()

    def cancel(self, stream_id: int) -> None:
        """Abandon a request as a browser does: RESET_STREAM and STOP_SENDING."""
        self._quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self._quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
        self.responses[stream_id].done.cancel()  # nobody waits for it any more
        self.transmit()

    async def response(self, stream_id: int) -> H3Response:
        return await self.responses[stream_id].done

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        authority: str = "localhost",
        sink: Callable[[bytes], None] | None = None,
    ) -> H3Response:
        """One request; ``sink`` receives the body instead of the response keeping it."""
        stream_id = self.open(method, path, headers, authority=authority, end_stream=not body)
        self.responses[stream_id].sink = sink
        if body:
            self.send(stream_id, body, end_stream=True)
        return await self.response(stream_id)

    def hold_credit(self) -> None:
        """Never give the server more receive credit than the initial window: a reader
        that has stopped reading."""
        self._quic._write_stream_limits = lambda builder, space, stream: None  # type: ignore[method-assign]

    # -- events ----------------------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 3:
            self._watch_control(event.stream_id, event.data)
        elif isinstance(event, StreamReset):
            pending = self.responses.get(event.stream_id)
            if pending is not None and not pending.done.done():
                pending.reset = event.error_code
                pending.done.set_result(pending)
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event
            for pending in self.responses.values():
                if not pending.done.done():
                    pending.done.set_exception(ConnectionError(event.reason_phrase))
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                pending = self.responses.get(h3_event.stream_id)
                if pending is None:
                    continue
                status = dict(h3_event.headers).get(b":status", b"0")
                if pending.status == 0 and status.startswith(b"1"):
                    pending.interim.append(h3_event.headers)
                elif pending.status == 0:
                    pending.status = int(status)
                    pending.headers = [(k, v) for k, v in h3_event.headers if k[:1] != b":"]
                else:
                    pending.trailers = h3_event.headers
                if h3_event.stream_ended:
                    self._complete(pending)
            elif isinstance(h3_event, DataReceived):
                pending = self.responses.get(h3_event.stream_id)
                if pending is None:
                    continue
                if h3_event.data:
                    pending.received += len(h3_event.data)
                    if pending.sink is not None:
                        pending.sink(h3_event.data)
                    else:
                        pending.chunks.append(h3_event.data)
                if h3_event.stream_ended:
                    self._complete(pending)

    def _complete(self, pending: H3Response) -> None:
        if not pending.done.done():
            pending.done.set_result(pending)

    def _watch_control(self, stream_id: int, data: bytes) -> None:
        """Parse the server's control stream for GOAWAY frames."""
        if stream_id in self._other_uni:
            return
        first = stream_id not in self._uni
        buffered = self._uni.get(stream_id, b"") + data
        buf = Buffer(data=buffered)
        consumed = 0
        try:
            if first:
                if buf.pull_uint_var() != 0:  # a QPACK stream, not the control stream
                    self._other_uni.add(stream_id)
                    return
                consumed = buf.tell()
            while not buf.eof():
                frame_type = buf.pull_uint_var()
                length = buf.pull_uint_var()
                payload = buf.pull_bytes(length)
                consumed = buf.tell()
                if frame_type == GOAWAY:
                    self.goaway.append(Buffer(data=payload).pull_uint_var())
        except BufferReadError:
            pass
        self._uni[stream_id] = buffered[consumed:]


def saw_retry(logger: QuicLogger) -> bool:
    """Whether the client's qlog shows a Retry packet it acted on."""
    for trace in logger.to_dict()["traces"]:
        for event in trace["events"]:
            header = event["data"].get("header", {})
            if (
                event["name"] == "transport:packet_received"
                and header.get("packet_type") == "retry"
            ):
                return True
    return False


@asynccontextmanager
async def h3_connect(
    port: int,
    ca: Path,
    *,
    server_name: str = "localhost",
    host: str = "127.0.0.1",
    quic_logger: QuicLogger | None = None,
    max_stream_data: int | None = None,
    idle_timeout: float = 10.0,
) -> AsyncIterator[H3Client]:
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        server_name=server_name,
        idle_timeout=idle_timeout,
        quic_logger=quic_logger,
        max_datagram_size=1350,
    )
    if max_stream_data is not None:
        configuration.max_stream_data = max_stream_data
    configuration.load_verify_locations(cafile=str(ca))
    async with connect(host, port, configuration=configuration, create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        yield client


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a client coroutine on a fresh loop in the test's thread, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate`` (it may read state of the server thread) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
