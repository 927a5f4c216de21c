"""A frame-level HTTP/2 client for tests: exact frames out, every frame in, no state machine.

h2's own client state machine would refuse to send what the abuse tests must send, and it
stops accepting frames after a GOAWAY (so it cannot see a graceful drain finish). This one
builds frames with hyperframe and HPACK-encodes header blocks itself; what it reads comes
back as parsed frames, HEADERS decoded.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB

Fields = list[tuple[bytes, bytes]]


@dataclass
class Reply:
    """What came back on one stream."""

    headers: Fields = field(default_factory=list)
    informational: list[Fields] = field(default_factory=list)
    body: bytes = b""
    trailers: Fields | None = None
    ended: bool = False
    reset: int | None = None
    frames: list[Frame] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class ConnectionClosed(Exception):
    pass


class RawH2:
    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
        timeout: float = 5.0,
        rcvbuf: int | None = None,
        handshake: bool = True,
        auto_ack: bool = True,
    ) -> None:
        """``auto_ack``: acknowledge the server's SETTINGS on receipt, as real clients do
        (nghttp2 applies its advertised stream window only then)."""
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.sent = 0
        self.encoder = Encoder()
        self.decoder = Decoder(max_header_list_size=1 << 24)
        self.buffer = bytearray()
        self.goaway: GoAwayFrame | None = None
        self.closed = False
        self.replies: dict[int, Reply] = {}
        self.server_settings: dict[int, int] = {}
        self.auto_ack = auto_ack
        self.settings_acked = False
        self._block: list[HeadersFrame | ContinuationFrame] = []
        if handshake:
            frame = SettingsFrame(0)
            frame.settings = dict(settings or {})
            self.send_raw(PREFACE + frame.serialize())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def send(self, *frames: Frame) -> None:
        self.send_raw(b"".join(f.serialize() for f in frames))

    def header_block(self, fields: Iterable[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(list(fields))

    def headers_frame(
        self, sid: int, fields: Iterable[tuple[bytes, bytes]], end_stream: bool = True
    ) -> HeadersFrame:
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        return HeadersFrame(sid, self.header_block(fields), flags=flags)

    def request(
        self,
        sid: int,
        path: bytes = b"/",
        method: bytes = b"GET",
        extra: Fields | None = None,
        body: bytes | None = None,
        authority: bytes = b"localhost",
        end_stream: bool | None = None,
    ) -> None:
        fields = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", authority),
            *(extra or []),
        ]
        ends = body is None if end_stream is None else end_stream
        frames: list[Frame] = [self.headers_frame(sid, fields, ends)]
        if body is not None:
            for start in range(0, max(len(body), 1), 16384):
                last = start + 16384 >= len(body)
                flags = ["END_STREAM"] if last and end_stream is not False else []
                frames.append(DataFrame(sid, body[start : start + 16384], flags=flags))
        self.send(*frames)

    def data(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        self.send(DataFrame(sid, data, flags=["END_STREAM"] if end_stream else []))

    def rst(self, sid: int, code: int = CANCEL) -> None:
        self.send(RstStreamFrame(sid, error_code=code))

    def window_update(self, sid: int, increment: int) -> None:
        self.send(WindowUpdateFrame(sid, window_increment=increment))

    def ping(self, payload: bytes = b"12345678") -> None:
        self.send(PingFrame(0, opaque_data=payload))

    def ack_settings(self) -> None:
        if not self.settings_acked:  # one SETTINGS from the server, one ACK
            self.settings_acked = True
            self.send(SettingsFrame(0, flags=["ACK"]))

    # -- receiving ---------------------------------------------------------------------------

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        """The next frame (HEADERS decoded into ``reply(sid).headers``), None at EOF."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(bytes(self.buffer[:9])))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(bytes(self.buffer[9 : 9 + length])))
                    del self.buffer[: 9 + length]
                    self._note(frame)
                    return frame
            try:
                chunk = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk

    def reply(self, sid: int) -> Reply:
        return self.replies.setdefault(sid, Reply())

    def _note(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.server_settings.update(frame.settings)
            if self.auto_ack:
                self.ack_settings()
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            self._block.append(frame)
            if "END_HEADERS" in frame.flags:
                first = self._block[0]
                fields = self.decoder.decode(b"".join(f.data for f in self._block), raw=True)
                self._block = []
                reply = self.reply(first.stream_id)
                reply.frames.append(first)
                fields = [(bytes(n), bytes(v)) for n, v in fields]
                if not reply.headers:
                    status = dict(fields).get(b":status", b"200")
                    if status.startswith(b"1"):
                        reply.informational.append(fields)
                    else:
                        reply.headers = fields
                else:
                    reply.trailers = fields
                if "END_STREAM" in first.flags:
                    reply.ended = True
        elif isinstance(frame, DataFrame):
            reply = self.reply(frame.stream_id)
            reply.frames.append(frame)
            reply.body += frame.data
            if "END_STREAM" in frame.flags:
                reply.ended = True
        elif isinstance(frame, RstStreamFrame):
            reply = self.reply(frame.stream_id)
            reply.frames.append(frame)
            reply.reset = frame.error_code

    def read_until(
        self, done: Callable[[], bool], timeout: float = 5.0, window: bool = True
    ) -> None:
        """Read frames until ``done()`` (raises at EOF or timeout); keeps windows open."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not reached")
            frame = self.read_frame(left)
            if frame is None:
                if done():
                    return
                raise ConnectionClosed("server closed the connection")
            if window and isinstance(frame, DataFrame) and frame.flow_controlled_length:
                size = frame.flow_controlled_length
                updates = [WindowUpdateFrame(0, window_increment=size)]
                if "END_STREAM" not in frame.flags:
                    updates.append(WindowUpdateFrame(frame.stream_id, window_increment=size))
                self.send(*updates)

    def response(self, sid: int, timeout: float = 5.0) -> Reply:
        reply = self.reply(sid)
        self.read_until(lambda: reply.ended or reply.reset is not None, timeout)
        return reply

    def wait_goaway(self, timeout: float = 5.0) -> GoAwayFrame:
        self.read_until(lambda: self.goaway is not None, timeout)
        assert self.goaway is not None
        return self.goaway

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Read (and drop) until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connection still open")
            try:
                self.read_frame(left)
            except TimeoutError:
                continue
