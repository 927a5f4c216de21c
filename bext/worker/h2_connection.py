"""One HTTP/2 client connection: frames in, engine events, the pipeline per stream, frames out.

The protocol state machine is an engine (:mod:`bext.protocol.h2_engine`: libnghttp2 through
``ngh2``, or the pure-Python h2, both sans-IO, chosen by ``server.http2.engine``); this
class does the I/O, maps each stream to a :class:`~bext.http.message.Request`, sends each
:class:`~bext.http.message.Response` back within the peer's flow-control windows, and holds
every policy below, so both engines behave alike. The pipeline never learns it is HTTP/2.

Memory per connection stays bounded both ways:

* inbound, DATA is acknowledged (WINDOW_UPDATE) only once the handler has consumed it, so a
  client can have at most one stream window of unread body per stream and one connection
  window in total, however slow the upstream;
* outbound, a response body is pulled from its stream or file only when the stream's window
  is open and the transport is not paused, one chunk at a time.

Abuse is cut off early: :class:`~bext.protocol.h2_guard.FrameGuard` sees every frame header
before the engine parses the frame (header blocks, SETTINGS and PING floods, oversized frames) and
counts cancelled streams (rapid reset); streams over the concurrency limit are refused one
by one; a reset stream's handler task is cancelled at once.

Timeouts use one lazily re-armed timer per connection (:mod:`bext.worker.deadlines`), as
in :mod:`h1_connection`: state changes store timestamps, the timer works out which deadline
passed and re-arms itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from bext.http.body import EMPTY_BODY, RequestBody
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.protocol import h2_engine as ev
from bext.protocol.events import Headers, ProtocolError
from bext.protocol.h2_engine import EngineFailed, ErrorCode, StreamGone, new_engine
from bext.protocol.h2_guard import FrameGuard, Verdict, goaway_frame
from bext.protocol.h2_headers import (
    CONNECTION_SPECIFIC,
    MalformedRequest,
    check_request,
    check_trailers,
)
from bext.runtime.outbox import HeldBytes
from bext.worker.context import BODY_RATE_WINDOW, WorkerContext
from bext.worker.deadlines import BodyRate, LazyTimer
from bext.worker.exchange import NO_BODY_STATUS, Exchange, StreamSender, with_body
from bext.worker.exchange import start as start_exchange

log = logging.getLogger("bext")

LINGER = 1.0
"""After a GOAWAY, how long to keep reading (and dropping) what the client still sends.

Closing a socket with unread input makes the kernel send a RST, which can destroy the
GOAWAY before the client reads it; so the connection waits for the client to close first.
"""

_DROP_FROM_RESPONSE = CONNECTION_SPECIFIC | {b"content-length"}
"""Connection-specific fields are illegal in HTTP/2; the length is bext's to state."""

_STATUS = {code: b"%d" % code for code in range(100, 600)}
_FLUSH_AT = 64 * 1024
"""Body bytes framed before the pump hands them to the transport (and checks for pause)."""

_NO_ERROR = ErrorCode.NO_ERROR
_PROTOCOL_ERROR = ErrorCode.PROTOCOL_ERROR
_INTERNAL_ERROR = ErrorCode.INTERNAL_ERROR
_REFUSED_STREAM = ErrorCode.REFUSED_STREAM
_CANCEL = ErrorCode.CANCEL


class _Stream(StreamSender):
    """One request stream: the :class:`~bext.worker.exchange.Sender` of its exchange and
    the :class:`~bext.http.body.BodyFlow` of its request body."""

    __slots__ = (
        "activity",
        "blocked_since",
        "body",
        "client_done",
        "conn",
        "error",
        "exchange",
        "id",
        "out",
        "out_end",
        "paused",
        "rate",
        "request",
        "request_trailers",
        "reset_code",
        "response",
        "sent",
        "status",
        "unacked",
        "waiter",
    )

    def __init__(self, conn: H2Connection, stream_id: int, now: float) -> None:
        self.conn = conn
        self.id = stream_id
        self.request: Request | None = None
        self.error: ProtocolError | None = None  # answer this instead of calling the handler
        self.body: RequestBody = EMPTY_BODY
        self.request_trailers: Headers | None = None
        self.client_done = False  # the client's END_STREAM arrived
        self.paused = False  # the body holds unread data: acknowledge nothing more
        self.unacked = 0  # body bytes received but not yet acknowledged
        self.activity = now  # last body bytes (for the body timeout)
        self.rate = BodyRate()
        self.exchange: Exchange | None = None  # while the answer needs waiting
        self.response: Response | None = None
        self.status = 0  # of the response HEADERS once sent (0: not started)
        self.sent = 0
        self.out: memoryview | None = None  # body bytes waiting for window
        self.out_end = False  # the stream ends once ``out`` is sent
        self.waiter: asyncio.Future[None] | None = None  # a producer waiting for room
        self.blocked_since = 0.0  # output waits for a window since then (0: not blocked)
        self.reset_code: int = _NO_ERROR  # how to stop the client's upload once answered

    # -- BodyFlow --------------------------------------------------------------------------

    def pause_body(self) -> None:
        self.paused = True
        self.rate.hold(self.conn._now)

    def resume_body(self) -> None:
        self.paused = False
        self.conn._acknowledge(self)

    def send_continue(self) -> None:
        self.conn._send_continue(self)

    # -- Sender ------------------------------------------------------------------------------

    whole_limit = 1 << 62  # a body in memory is framed as the windows open, never copied

    @property
    def gone(self) -> bool:
        return self.error is not None or self.conn._streams.get(self.id) is not self

    def send_whole(self, request: Request, response: Response, with_body: bool) -> None:
        conn = self.conn
        try:
            conn._send_whole(self, response, with_body)
        except StreamGone as exc:  # cannot happen while streams are in sync
            log.error("client %s: stream %d: %r", conn._client[0], self.id, exc)
            conn._abandon(self, "stream failed")
            conn._after_stream()
        if not conn._starting:
            conn._pump()

    def send_head(
        self, request: Request, response: Response, length: int | None, with_body: bool
    ) -> None:
        self.conn._send_stream_head(self, response, length, with_body)

    async def ready(self) -> None:
        await self.conn._room(self)

    def send_data(self, data: bytes) -> None:
        self.conn._send_data(self, data)

    def send_end(self, request: Request, response: Response, sent: int) -> None:
        self.conn._send_end(self)

    def break_off(self) -> None:
        conn = self.conn
        if conn._live(self):
            conn._reset(self, _INTERNAL_ERROR)
            conn._pump()


class H2Connection(asyncio.Protocol):
    """The server side of one HTTP/2 connection (TLS with ALPN "h2", or h2c)."""

    metric_version = 1
    """Index in :data:`bext.shm.metrics.VERSIONS` (connections by HTTP version)."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        limits = ctx.h2
        self._limits = limits
        # The path is a header field in HTTP/2: allow what HTTP/1.1 allows for both.
        self._header_list_size = ctx.limits.max_header_size + ctx.limits.max_uri_length
        self._engine = new_engine(limits, self._header_list_size)
        self._guard = FrameGuard(limits, 2 * self._header_list_size)
        self._transport: asyncio.Transport | None = None
        self._client = ("", 0)
        self._server_port = 0
        self._streams: dict[int, _Stream] = {}
        self._new: list[_Stream] = []  # requests of this read, started once it is parsed
        self._starting = False  # in _start_new: the caller pumps once for all streams
        self._sending: dict[int, _Stream] = {}  # output waiting for window (FIFO)
        self._served = 0
        self._now = 0.0
        self._closed = False  # nothing more is read or written (maybe lingering)
        self._lingering = False
        self._failed = False  # a GOAWAY was sent or received: the engine sends nothing else
        self._draining = False  # our graceful GOAWAY is out: no new streams
        self._goaway_id = 0
        self._settings_acked = False
        self._write_paused = False
        self._write_paused_since = 0.0
        self._held = HeldBytes(self._loop, self)  # frames for the end of the loop's turn
        self._head_deadline: float | None = None
        self._idle_since: float | None = None
        self._timer = LazyTimer(self._loop, self._on_timer)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if not self._ctx.admit(self, peer[0] if isinstance(peer, tuple) else ""):
            transport.abort()
            self._closed = True
            return
        self._attach(transport)

    def takeover(self, transport: asyncio.BaseTransport, data: bytes) -> None:
        """Continue a connection another protocol admitted and handed over (h2c prior
        knowledge): ``connection_made(transport)`` then ``data_received(data)``, except
        that the connection is not admitted (counted) again.
        """
        self._attach(cast(asyncio.Transport, transport))
        if data:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return  # lingering after GOAWAY: the client's last bytes are dropped
        self._ctx.counters.received(len(data))
        self._now = now = self._loop.time()
        verdict = self._guard.feed(data, now)
        if verdict is not None:
            self._fail(verdict)
            return
        try:
            events = self._engine.receive_data(data)
        except EngineFailed as exc:
            # The engine queued a GOAWAY with the matching error code already.
            log.info("client %s: HTTP/2 protocol error: %s", self._client[0], exc)
            self._failed = True
            self._linger_close()
            return
        except Exception:
            log.exception("client %s: HTTP/2 engine failed on input", self._client[0])
            self._fail((_INTERNAL_ERROR, "internal error"))
            return
        try:
            for event in events:
                handler = _EVENT_HANDLERS.get(type(event))
                if handler is not None:
                    handler(self, event)
                    if self._closed:
                        return
            if self._new:
                self._start_new()
        except Exception:
            log.exception("client %s: HTTP/2 event handling failed", self._client[0])
            self._fail((_INTERNAL_ERROR, "internal error"))
            return
        self._pump()

    def eof_received(self) -> bool:
        if self._held.data is not None:
            self.send_held()  # the transport closes now, with what it has
        return False  # the client will send nothing more: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._held.take()  # dropped: the client is gone
        self._ctx.leave(self)
        self._timer.cancel()
        self._failed = True  # nothing may be sent any more
        self._new = []
        for stream in list(self._streams.values()):
            self._abandon(stream, "client closed the connection")

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_paused_since = now = self._loop.time()
        self._timer.arm(now + self._ctx.timeouts.send)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    # -- graceful stop --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Drain: GOAWAY with the last stream id, finish those streams, then close.

        Streams the client opens after the GOAWAY are refused (REFUSED_STREAM): HTTP/2
        tells the client that they were never processed, so it retries them elsewhere.
        """
        if not self._closed and not self._draining and self._transport is not None:
            self._start_drain()

    def abort(self) -> None:
        self._closed = True
        self._held.take()
        if self._transport is not None:
            self._transport.abort()

    # -- inbound events -------------------------------------------------------------------

    def _on_request(self, event: ev.RequestReceived) -> None:
        sid = event.stream_id
        if self._draining and sid > self._goaway_id:
            self._send_reset(sid, _REFUSED_STREAM)  # never becomes a request
            return
        if len(self._streams) >= self._limits.max_concurrent_streams:
            # RFC 9113 §5.1.2: REFUSED_STREAM lets a client that has not seen our SETTINGS
            # yet retry; once it has, exceeding the limit is its bug (Go does the same).
            self._send_reset(sid, _PROTOCOL_ERROR if self._settings_acked else _REFUSED_STREAM)
            verdict = self._guard.stream_reset(self._now)
            if verdict is not None:
                self._fail(verdict)
            return
        now = self._now
        ctx = self._ctx
        stream = _Stream(self, sid, now)
        self._streams[sid] = stream
        self._new.append(stream)
        self._head_deadline = self._idle_since = None
        self._served += 1
        ended = event.end_stream
        stream.client_done = ended
        try:
            head = check_request(event.headers, ctx.limits, self._header_list_size)
        except ProtocolError as exc:
            self._fail_stream(stream, exc)
        else:
            body = EMPTY_BODY if ended else RequestBody(stream, head.expect_continue, 0)
            # high_water 0: the body pauses whenever it holds unread data and resumes once
            # the handler has read it all, which is when its bytes are acknowledged.
            stream.body = body
            stream.request = Request.from_head(
                head, ctx.scheme, self._client, self._server_port, body, now, "2.0"
            )
            if not ended:
                self._timer.arm(now + ctx.timeouts.body)
        if self._served >= ctx.max_keepalive_requests and not self._draining:
            self._start_drain()  # like HTTP/1.1 keep-alive: bound the work per connection

    def _on_data(self, event: ev.DataReceived) -> None:
        sid = event.stream_id
        data = event.data
        size = len(data)
        flow = event.flow_controlled_length
        stream = self._streams.get(sid)
        engine = self._engine
        if stream is None or stream.body is EMPTY_BODY:
            engine.acknowledge(sid, flow)  # nobody wants it: drop it
            return
        if flow > size:
            engine.acknowledge(sid, flow - size)  # padding
        body = stream.body
        if body.received + size > self._ctx.limits.max_body_size:
            engine.acknowledge(sid, size)
            self._fail_stream(stream, ProtocolError(413, "request body larger than max_body_size"))
            return
        if not size:
            return  # an empty DATA frame: b"" would read as the end of the body
        stream.activity = now = self._now
        if self._ctx.timeouts.body_min_rate:
            check = stream.rate.first_bytes(now, BODY_RATE_WINDOW)
            if check is not None:
                self._timer.arm(check)
        body.feed(data)  # calls pause_body when the handler has not read the last chunk yet
        if stream.paused:
            stream.unacked += size
        else:
            engine.acknowledge(sid, size)

    def _on_stream_ended(self, event: ev.StreamEnded) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream.client_done = True
            if stream.body is not EMPTY_BODY:
                stream.body.end(stream.request_trailers)

    def _on_trailers(self, event: ev.TrailersReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        stream.client_done = True  # the engine has checked that trailers carry END_STREAM
        try:
            stream.request_trailers = check_trailers(event.headers)
        except ProtocolError as exc:
            self._fail_stream(stream, exc)

    def _on_stream_reset(self, event: ev.StreamReset) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            self._abandon(stream, "client reset the stream")
            self._after_stream()
        # Every stream the client cancels counts, whether or not bext had seen its request
        # yet (an engine may drop a request reset in the same read before reporting it).
        if event.remote:
            verdict = self._guard.stream_reset(self._now)
            if verdict is not None:
                self._fail(verdict)

    def _on_stream_rejected(self, event: ev.StreamRejected) -> None:
        """The engine reset a malformed request itself: it counts like bext's own resets."""
        log.info("client %s: stream %d refused by the HTTP/2 engine (error %d)",
                 self._client[0], event.stream_id, event.error_code)  # fmt: skip
        verdict = self._guard.stream_reset(self._now)
        if verdict is not None:
            self._fail(verdict)

    def _on_settings_acked(self, event: ev.SettingsAcknowledged) -> None:
        self._settings_acked = True

    def _on_connection_terminated(self, event: ev.ConnectionTerminated) -> None:
        # The client sent GOAWAY. h2 refuses to send anything after it, so what is in
        # flight cannot be finished (on either engine, to behave alike): clients send it
        # when they are done anyway.
        if event.error_code != _NO_ERROR:
            log.info("client %s: GOAWAY %s", self._client[0], event.error_code)
        self._failed = True
        self._linger_close()

    def _on_connection_failed(self, event: ev.ConnectionFailed) -> None:
        # The engine found a connection error itself and queued its GOAWAY.
        log.info("client %s: HTTP/2 connection error %s: %s",
                 self._client[0], event.error_code, event.reason)  # fmt: skip
        self._failed = True
        self._linger_close()

    # -- requests ---------------------------------------------------------------------------

    def _start_new(self) -> None:
        """Run the exchanges of the streams this read opened, unless they were reset already.

        Starting them only after the whole read is parsed means a burst of HEADERS + RST_STREAM
        pairs (rapid reset) never reaches the pipeline at all.
        """
        new = self._new
        self._new = []
        self._starting = True
        try:
            for stream in new:
                if self._streams.get(stream.id) is not stream:
                    continue
                if stream.error is not None:
                    self._send_error(stream, stream.error)
                    continue
                request = stream.request
                assert request is not None
                stream.exchange = start_exchange(self._ctx, request, stream)
        finally:
            self._starting = False

    def _send_whole(self, stream: _Stream, response: Response, with_body: bool) -> None:
        status = response.status
        body = response.body if with_body else b""
        trailers = response.trailers if with_body else None
        length = len(response.body)
        self._send_head(stream, status, response.headers, length, not body and not trailers)
        if not body and not trailers:
            self._finish(stream)
            return
        stream.response = response
        stream.sent = len(body)
        stream.out = memoryview(body) if body else None
        stream.out_end = True
        if stream.out is None:
            self._end_stream(stream)
        else:
            self._sending[stream.id] = stream

    def _send_stream_head(
        self, stream: _Stream, response: Response, length: int | None, with_body: bool
    ) -> None:
        self._send_head(stream, response.status, response.headers, length, not with_body)
        if with_body:
            stream.response = response
        else:
            self._finish(stream)
        self._pump()  # the head goes out now, however long the first chunk takes

    def _send_data(self, stream: _Stream, data: bytes) -> None:
        """Queue one chunk; :meth:`_room` said there is a window for it."""
        if not self._live(stream):
            raise ConnectionResetError("stream closed")
        stream.sent += len(data)
        stream.out = memoryview(data)
        self._sending[stream.id] = stream
        self._pump()

    def _send_end(self, stream: _Stream) -> None:
        stream.out_end = True
        if stream.out is None:
            self._end_stream(stream)
        self._pump()

    async def _room(self, stream: _Stream) -> None:
        """Wait until the last chunk is framed, the stream's window is open and the transport
        takes more: only then is the next chunk pulled from the source."""
        while True:
            if not self._live(stream):
                raise ConnectionResetError("stream closed")
            if stream.out is None and not self._write_paused:
                try:
                    window = self._engine.send_window(stream.id)
                except StreamGone as exc:
                    raise ConnectionResetError("stream closed") from exc
                if window > 0:
                    stream.blocked_since = 0.0
                    return
                if not stream.blocked_since:
                    # A shut window: send_timeout runs from now. _pump would start it too,
                    # but only runs when the client sends something, and one that keeps
                    # the window at 0 and stays silent would hold the stream forever.
                    stream.blocked_since = now = self._loop.time()
                    self._timer.arm(now + self._ctx.timeouts.send)
            self._flush()  # the response head, at least, goes out meanwhile
            waiter = self._loop.create_future()
            stream.waiter = waiter
            self._sending[stream.id] = stream
            try:
                await waiter
            finally:
                stream.waiter = None

    def _send_head(
        self,
        stream: _Stream,
        status: int,
        headers: Headers,
        length: int | None,
        end_stream: bool,
    ) -> None:
        if status < 200:
            # A final response cannot be 1xx (101 has no meaning in HTTP/2 at all); h2
            # would refuse it and take the connection down with it.
            log.error("client %s: handler answered %d, sending 502", self._client[0], status)
            status = 502
        fields = [(b":status", _STATUS.get(status) or b"%d" % status), *self._ctx.header_fields()]
        for name, value in headers:
            name = name.lower()
            if name not in _DROP_FROM_RESPONSE:
                fields.append((name, value))
        if length is not None and status not in NO_BODY_STATUS:
            fields.append((b"content-length", b"%d" % length))
        self._engine.send_headers(stream.id, fields, end_stream)
        stream.status = status

    def _send_continue(self, stream: _Stream) -> None:
        if self._live(stream) and not stream.status and not self._failed:
            self._engine.send_informational(stream.id, [(b":status", b"100")])
            self._flush()

    def _send_error(self, stream: _Stream, exc: ProtocolError) -> None:
        log.info("client %s: stream %d: %d %s", self._client[0], stream.id, exc.status, exc.reason)
        request = stream.request
        body = request is None or with_body(request, exc.status)
        response = error_response(exc.status, None, exc.reason)
        if not isinstance(exc, MalformedRequest):
            self._send_whole(stream, response, body)
            return
        # A stream error: the answer, then RST_STREAM(PROTOCOL_ERROR) in place of END_STREAM.
        # Its few bytes fit any window a client can have opened.
        self._send_head(stream, exc.status, response.headers, len(response.body), False)
        engine = self._engine
        if body and len(response.body) <= engine.send_window(stream.id):
            engine.send_data(stream.id, response.body, False)
            stream.sent = len(response.body)
        self._flush()  # the answer goes first: nghttp2 drops a reset stream's queued DATA
        self._send_reset(stream.id, _PROTOCOL_ERROR)
        request_or_none = stream.request
        if request_or_none is not None:
            self._ctx.record(request_or_none, exc.status, stream.sent, self._loop.time())
        else:
            self._ctx.record_unparsed(self._client[0], exc.status, stream.sent)
        self._abandon(stream, "malformed request")
        self._after_stream()

    def _end_stream(self, stream: _Stream) -> None:
        """All body bytes are framed: send the trailers or an empty END_STREAM DATA frame."""
        response = stream.response
        trailers = response.trailers if response is not None else None
        if trailers:
            lowered = ((name.lower(), value) for name, value in trailers)
            fields = [field for field in lowered if field[0] not in CONNECTION_SPECIFIC]
            self._engine.send_trailers(stream.id, fields)
        else:
            self._engine.end_stream(stream.id)
        self._finish(stream)

    def _finish(self, stream: _Stream) -> None:
        """The response is complete: log it, and stop the upload if one is still coming."""
        self._streams.pop(stream.id, None)
        self._sending.pop(stream.id, None)
        request = stream.request
        if request is not None:
            self._ctx.record(request, stream.status, stream.sent, self._loop.time())
        else:
            self._ctx.record_unparsed(self._client[0], stream.status, stream.sent)
        if not stream.client_done:
            # RFC 9113 §8.1: a complete response may end the request early; NO_ERROR tells
            # the client to stop sending the body without treating it as a failure.
            stream.body.discard()
            self._flush()  # the response goes first: nghttp2 drops a reset stream's queue
            self._send_reset(stream.id, stream.reset_code)
        if stream.unacked:
            self._engine.acknowledge(stream.id, stream.unacked)
            stream.unacked = 0
        self._after_stream()

    def _after_stream(self) -> None:
        if self._streams or self._closed:
            return
        if self._draining:
            self._linger_close()  # every stream the GOAWAY promised is done
        else:
            self._idle_since = now = self._loop.time()
            self._timer.arm(now + self._ctx.timeouts.keepalive)

    # -- flow control -------------------------------------------------------------------------

    def _acknowledge(self, stream: _Stream) -> None:
        """The handler consumed the body buffered so far: reopen the windows for as much."""
        stream.activity = now = self._loop.time()
        stream.rate.release(now)  # the wait was ours, not the client's
        if stream.unacked and self._live(stream) and not self._failed:
            self._engine.acknowledge(stream.id, stream.unacked)
            stream.unacked = 0
            if not self._closed:
                self._flush()

    def _pump(self) -> None:
        """Frame waiting body bytes as far as the windows allow, then flush.

        Streams take turns one frame at a time, so one large download does not hold back
        the small responses multiplexed beside it.
        """
        sending = self._sending
        if sending and not self._write_paused and not self._failed:
            engine = self._engine
            chunk = engine.max_send_chunk
            queued = 0
            progress = True
            while progress and sending and not self._write_paused and not self._closed:
                progress = False
                for stream in list(sending.values()):
                    sid = stream.id
                    if sending.get(sid) is not stream:
                        continue  # finished or dropped by an earlier turn of this round
                    try:
                        window = engine.send_window(sid)
                    except StreamGone:  # not expected: be safe anyway
                        self._abandon(stream, "stream closed")
                        self._after_stream()
                        continue
                    out = stream.out
                    if window <= 0:
                        if not stream.blocked_since:
                            stream.blocked_since = now = self._loop.time()
                            self._timer.arm(now + self._ctx.timeouts.send)
                        continue
                    stream.blocked_since = 0.0
                    if out is None:  # a producer waits for the window to open
                        del sending[sid]
                        _wake(stream.waiter)
                        continue
                    size = min(window, chunk, len(out))
                    progress = True
                    queued += size
                    if size < len(out):
                        engine.send_data(sid, out[:size], False)
                        stream.out = out[size:]
                    else:
                        stream.out = None
                        ends = stream.out_end and (
                            stream.response is None or not stream.response.trailers
                        )
                        engine.send_data(sid, out, ends)
                        if ends:
                            self._finish(stream)
                        elif stream.out_end:
                            self._end_stream(stream)
                        else:
                            del sending[sid]
                            _wake(stream.waiter)
                    if queued >= _FLUSH_AT:
                        queued = 0
                        self._flush()
                        if self._write_paused or self._closed:
                            break
        self._flush()

    def _flush(self) -> None:
        """Take what the engine has framed; it is written at the end of this turn of the
        loop (:mod:`bext.runtime.outbox`), or now once more than ``HOLD_LIMIT`` waits."""
        data = self._engine.data_to_send()
        if not data or self._closed or self._transport is None:
            return
        now = self._held.add(self._transport, data)
        if now is not None:
            self._write(self._transport, now)

    def send_held(self) -> None:
        """Write the frames :meth:`_flush` held (the outbox, at the end of the turn; a
        direct write or the end of input first)."""
        transport = self._transport
        if self._held.send(transport):
            assert transport is not None
            self._check_output(transport)

    def _write(self, transport: asyncio.Transport, data: bytes) -> None:
        transport.write(data)
        self._check_output(transport)

    def _check_output(self, transport: asyncio.Transport) -> None:
        """After a write: drop a client whose unread output passed the limit."""
        if (
            self._write_paused
            and transport.get_write_buffer_size() > self._limits.max_output_buffer
        ):
            # Bodies wait for the transport to drain, so this is frames the client provokes
            # (ACKs, resets, heads) while it does not read: it gets nothing more.
            log.info("client %s: HTTP/2 client does not read, dropping it", self._client[0])
            self.abort()

    # -- failures and closing ------------------------------------------------------------------

    def _live(self, stream: _Stream) -> bool:
        return self._streams.get(stream.id) is stream

    def _abandon(self, stream: _Stream, reason: str) -> None:
        """Forget a stream that will not complete: its handler is cancelled, its body fails."""
        self._streams.pop(stream.id, None)
        self._sending.pop(stream.id, None)
        stream.out = None
        stream.body.fail(reason)
        exchange = stream.exchange
        if exchange is not None:
            stream.exchange = None
            exchange.cancel()
        if stream.unacked and not self._failed:
            self._engine.acknowledge(stream.id, stream.unacked)
            stream.unacked = 0

    def _reset(self, stream: _Stream, code: int) -> None:
        self._send_reset(stream.id, code)
        self._abandon(stream, "stream reset")
        self._after_stream()

    def _send_reset(self, sid: int, code: int) -> None:
        if not self._failed:
            self._engine.reset_stream(sid, code)

    def _fail_stream(self, stream: _Stream, exc: ProtocolError) -> None:
        """The request's input is unusable.

        A malformed request (RFC 9113 §8.1.1: pseudo-header faults, uppercase or invalid
        field names, connection-specific fields, bad trailers ...) is a stream error of
        type PROTOCOL_ERROR: if nothing was sent yet, a 400 saying why goes first (the RFC
        allows it) and the stream then ends with RST_STREAM(PROTOCOL_ERROR) instead of
        END_STREAM. It counts against the reset budget like a client's reset, so a flood
        of them ends the connection, as a rapid reset does. Other faults are answered with
        ``exc.status`` if nothing was sent yet. An answer waits for :meth:`_start_new`,
        after the read's events are all handled: the engine has parsed the whole read, and
        a RST_STREAM later in it must win.
        """
        stream.body.fail(exc.reason)
        malformed = isinstance(exc, MalformedRequest)
        if malformed:
            verdict = self._guard.stream_reset(self._now)
            if verdict is not None:
                self._fail(verdict)
                return
        if stream.status or self._failed:
            self._reset(stream, _PROTOCOL_ERROR if malformed else _CANCEL)
            return
        exchange = stream.exchange
        stream.exchange = None  # whatever the handler does next, this stream is answered here
        if exchange is not None:
            exchange.cancel()
        stream.error = exc
        if stream not in self._new:
            self._new.append(stream)

    def _fail(self, verdict: Verdict) -> None:
        """A connection error: GOAWAY with ``code``, drop every stream, close."""
        code, reason = verdict
        log.info("client %s: HTTP/2 connection error %s: %s", self._client[0], code, reason)
        if not self._failed:
            self._failed = True
            last = self._goaway_id if self._draining else None
            self._engine.close_connection(code, last)
        self._linger_close()

    def _start_drain(self) -> None:
        self._draining = True
        self._goaway_id = self._engine.highest_inbound_stream_id
        if not self._failed and self._transport is not None:
            self._flush()  # keep frame order: what the engine queued goes first
            if self._held.data is not None:
                self.send_held()
            self._transport.write(goaway_frame(self._goaway_id, _NO_ERROR))
        if not self._streams:
            self._linger_close()

    def _linger_close(self) -> None:
        """Flush the GOAWAY, drop what is in flight, close once the client has (or soon)."""
        if self._closed:
            return
        self._flush()
        self._closed = self._lingering = True
        self._new = []
        for stream in list(self._streams.values()):
            self._abandon(stream, "connection closed")
        self._timer.cancel()
        self._timer.arm(self._loop.time() + LINGER)

    # -- timeouts ------------------------------------------------------------------------------

    def _attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self._client = (peer[0], peer[1])
        if isinstance(sock, tuple):
            self._server_port = sock[1]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # HTTP/2 writes many small frames back to back (an ACK, then a response a
            # moment later): Nagle would hold the second for the client's delayed ACK,
            # 40 ms. uvloop sets this already; asyncio only for sockets made with proto 6.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = self._ctx
        # The preface and the first request must arrive within header_timeout.
        self._head_deadline = deadline = self._loop.time() + ctx.timeouts.header
        self._timer.arm(deadline)
        self._flush()  # our SETTINGS and connection WINDOW_UPDATE
        if ctx.stopping:
            self.shutdown()

    def _on_timer(self) -> None:
        if self._lingering:
            if self._transport is not None:
                self._transport.close()
            return
        if self._closed:
            return
        now = self._loop.time()
        timeouts = self._ctx.timeouts
        upcoming: list[float] = []
        if self._write_paused:
            deadline = self._write_paused_since + timeouts.send
            if deadline <= now:
                log.info("client %s: send timeout, closing", self._client[0])
                self.abort()
                return
            upcoming.append(deadline)
        if self._head_deadline is not None:
            if self._head_deadline <= now:
                log.info("client %s: no HTTP/2 request in time, closing", self._client[0])
                self._goodbye()
                return
            upcoming.append(self._head_deadline)
        if self._idle_since is not None:
            deadline = self._idle_since + timeouts.keepalive
            if deadline <= now:
                self._goodbye()
                return
            upcoming.append(deadline)
        expired: list[tuple[_Stream, ProtocolError | None]] = []
        for stream in self._streams.values():
            if stream.blocked_since:
                deadline = stream.blocked_since + timeouts.send
                if deadline <= now:
                    expired.append((stream, None))
                    continue
                upcoming.append(deadline)
            if not stream.client_done and not stream.paused and stream.body is not EMPTY_BODY:
                deadline = stream.activity + timeouts.body
                if deadline <= now:
                    expired.append((stream, ProtocolError(408, "request body timeout")))
                    continue
                upcoming.append(deadline)
                if timeouts.body_min_rate:
                    rate_deadline = stream.rate.check(
                        now, stream.body.received, timeouts.body_min_rate, BODY_RATE_WINDOW
                    )
                    if rate_deadline is None:
                        expired.append((stream, ProtocolError(408, "request body too slow")))
                        continue
                    upcoming.append(rate_deadline)
        for stream, error in expired:
            if not self._live(stream):
                continue
            if error is None:
                log.info("client %s: stream %d send timeout", self._client[0], stream.id)
                self._reset(stream, _CANCEL)
            else:
                self._fail_stream(stream, error)
        if self._new:
            self._start_new()
        if expired:
            self._pump()
        if upcoming:
            self._timer.arm(min(upcoming))

    def _goodbye(self) -> None:
        """Close an idle connection politely: GOAWAY(NO_ERROR) with the last stream id."""
        if not self._draining:
            self._start_drain()
        else:
            self._linger_close()


_EVENT_HANDLERS: dict[type[ev.EngineEvent], Callable[[H2Connection, Any], None]] = {
    ev.DataReceived: H2Connection._on_data,
    ev.RequestReceived: H2Connection._on_request,
    ev.StreamEnded: H2Connection._on_stream_ended,
    ev.StreamReset: H2Connection._on_stream_reset,
    ev.StreamRejected: H2Connection._on_stream_rejected,
    ev.TrailersReceived: H2Connection._on_trailers,
    ev.SettingsAcknowledged: H2Connection._on_settings_acked,
    ev.ConnectionTerminated: H2Connection._on_connection_terminated,
    ev.ConnectionFailed: H2Connection._on_connection_failed,
}


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
