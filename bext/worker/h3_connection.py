"""One HTTP/3 client connection: QUIC in, aioquic's HTTP/3 events, pipeline, QUIC out.

This is the only place that knows both QUIC and bext's request model. aioquic is sans-IO:
:class:`QuicSession` (a :class:`~aioquic.quic.connection.QuicConnection`) takes datagrams and
produces datagrams, :class:`aioquic.h3.connection.H3Connection` turns stream data into
HTTP/3 events; this module owns the timers, the request tasks and the flow control between
them and the pipeline. The UDP endpoint (:mod:`bext.worker.h3_server`) only routes datagrams
here by connection ID.

Memory stays bounded in both directions, which aioquic does not do by itself:

- Inbound, aioquic hands every received byte to the application at once and doubles a
  stream's receive credit whenever half of it is used, whether or not anyone reads. bext
  replaces that policy for request streams (:class:`QuicSession`): credit grows only while
  the request body is being consumed (:func:`~bext.protocol.h3_limits.stream_credit`), so a
  fast uploader to a slow handler is held back by QUIC flow control, as TCP would.
- Outbound, ``send_data`` appends to an unbounded buffer. Producers (response streams, file
  chunks, large bodies) stop pulling while a stream has more than ``send_buffer`` bytes
  unsent or unacknowledged, and are woken when ACKs bring it under half of that.

aioquic offers no public hook for some of what bext needs: the QUIC and HTTP/3 subclasses
that reach into its internals are in :mod:`bext.protocol.quic_session`; here, only
:class:`H3Connection` uses the control stream id to send GOAWAY on, which aioquic's HTTP/3
layer cannot send, and drops its record of a stream that bext reset.

Every request runs like on HTTP/1.1: ``ctx.handler.handle`` returns a Response (sent at
once when it is small) or an awaitable (a task per request). A client reset or
STOP_SENDING cancels the task; many of them in a row close the connection
(:class:`~bext.protocol.h3_limits.ResetGuard`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import ErrorCode, FrameType, encode_frame
from aioquic.h3.connection import H3Connection as H3Protocol
from aioquic.h3.connection import ProtocolError as H3ProtocolError
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

from bext.http.body import EMPTY_BODY, RequestBody
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.protocol.events import Headers, ProtocolError
from bext.protocol.h3_limits import H3Limits, ResetGuard
from bext.protocol.quic_session import H3Session, QuicSession
from bext.protocol.request_fields import CONNECTION_SPECIFIC, parse_request_head
from bext.worker.context import BODY_RATE_WINDOW, WorkerContext
from bext.worker.deadlines import BodyRate, LazyTimer
from bext.worker.exchange import NO_BODY_STATUS, Exchange, StreamSender, with_body
from bext.worker.exchange import start as start_exchange

log = logging.getLogger("bext")

_STATUS = {code: b"%d" % code for code in range(100, 600)}

_RESPONSE_DROP = CONNECTION_SPECIFIC | {b"te", b"content-length"}
"""RFC 9114 §4.2: no connection-specific fields; the length is bext's to state."""


# -- connection ------------------------------------------------------------------------------------


class QuicEndpoint(Protocol):
    """What a connection needs from the UDP endpoint that carries it."""

    def send_datagram(self, data: bytes, addr: NetworkAddress) -> None: ...

    def route(self, cid: bytes, conn: H3Connection) -> None: ...

    def unroute(self, cid: bytes) -> None: ...

    def handshake_done(self, conn: H3Connection) -> None: ...

    def connection_gone(self, conn: H3Connection) -> None: ...


class _Stream(StreamSender):
    """One request stream: the :class:`~bext.worker.exchange.Sender` of its exchange and
    the :class:`~bext.http.body.BodyFlow` of its request body."""

    __slots__ = (
        "blocked_since",
        "body",
        "body_activity",
        "conn",
        "done",
        "exchange",
        "opened",
        "paused",
        "rate",
        "receive_done",
        "receiving",
        "request",
        "started",
        "stopped",
        "stream_id",
    )

    def __init__(self, conn: H3Connection, stream_id: int, now: float) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.opened = now
        self.request: Request | None = None
        self.body: RequestBody | None = None
        self.body_activity = now
        self.rate = BodyRate()
        self.receiving = False  # the body is still arriving and someone may read it
        self.receive_done = False  # nothing more will arrive on the stream (FIN or reset)
        self.paused = False
        self.started = False  # response HEADERS sent
        self.stopped = False  # STOP_SENDING sent: the rest of the body is not wanted
        self.done = False  # response complete or abandoned: nothing more will be sent
        self.exchange: Exchange | None = None  # while the answer needs waiting
        self.blocked_since: float | None = None  # waiting for QUIC to drain since

    def pause_body(self) -> None:
        self.paused = True
        self.rate.hold(self.conn._loop.time())
        self.conn._quic.flowing.discard(self.stream_id)

    def resume_body(self) -> None:
        self.conn._resume_body(self)

    def send_continue(self) -> None:
        self.conn._send_continue(self)

    # -- Sender ------------------------------------------------------------------------------

    @property
    def whole_limit(self) -> int:
        return self.conn._limits.send_buffer  # larger bodies go out as QUIC drains

    @property
    def gone(self) -> bool:
        conn = self.conn
        return self.done or conn._closing or conn._h3 is None

    def send_whole(self, request: Request, response: Response, with_body: bool) -> None:
        self.conn._send_simple(self, response, with_body)

    def send_head(
        self, request: Request, response: Response, length: int | None, with_body: bool
    ) -> None:
        self.conn._send_head(self, response, length, with_body)

    async def ready(self) -> None:
        await self.conn._ready(self)

    def send_data(self, data: bytes) -> None:
        self.conn._send_data(self, data)

    def send_end(self, request: Request, response: Response, sent: int) -> None:
        self.conn._send_end(self, response, sent)

    def break_off(self) -> None:
        self.conn._abort_stream(self, ErrorCode.H3_INTERNAL_ERROR)


class H3Connection:
    """Serves the requests of one QUIC connection (see the module docstring)."""

    metric_version = 2
    """Index in :data:`bext.shm.metrics.VERSIONS` (connections by HTTP version)."""

    def __init__(
        self,
        endpoint: QuicEndpoint,
        quic: QuicSession,
        ctx: WorkerContext,
        limits: H3Limits,
        client: NetworkAddress,
        server_port: int,
    ) -> None:
        self._endpoint = endpoint
        self._quic = quic
        self._ctx = ctx
        self._limits = limits
        self._loop = loop = asyncio.get_running_loop()
        self._client = (str(client[0]), int(client[1]))
        self._server_port = server_port
        self._h3: H3Protocol | None = None
        self._streams: dict[int, _Stream] = {}
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._rejected: set[int] = set()
        self._low_water = limits.send_buffer // 2
        now = loop.time()
        self._created = now
        self._guard = ResetGuard(limits.reset_burst, limits.reset_rate, now)
        self.cids: set[bytes] = set()
        """Connection IDs the endpoint routes here (maintained by the endpoint)."""
        self.handshaking = True
        self._draining = False
        self._goaway_id: int | None = None
        self._next_request_id = 0  # one past the highest request stream seen
        self._closing = False  # CONNECTION_CLOSE queued: nothing else is sent
        self._gone = False  # terminated and released
        self._in_events = False
        self._transmit_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._watch = LazyTimer(self._loop, self._on_watch)
        ctx.admit(self, self._client[0])  # the endpoint applied the limits already
        self._arm_watch(now + limits.handshake_timeout)

    # -- datagrams and timers ----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self._gone:
            return
        self._ctx.counters.received(len(data))
        try:
            self._quic.receive_datagram(data, addr, now=self._loop.time())
            self._process_events()
            if self._waiters:
                self._wake_senders()
            if self._draining:
                self._close_if_idle()
        except Exception:
            log.exception("HTTP/3 connection from %s failed", self._client[0])
            self.abort()
            return
        self._transmit()

    def _on_quic_timer(self) -> None:
        self._timer = None
        if self._gone:
            return
        now = max(self._timer_at or 0.0, self._loop.time())
        try:
            self._quic.handle_timer(now=now)
            self._process_events()
        except Exception:
            log.exception("HTTP/3 connection from %s failed", self._client[0])
            self.abort()
            return
        self._transmit()

    def _transmit(self) -> None:
        """Send what QUIC has ready, then arm its timer for whatever comes next."""
        handle = self._transmit_handle
        if handle is not None:
            handle.cancel()
            self._transmit_handle = None
        if self._gone:
            return
        quic = self._quic
        send = self._endpoint.send_datagram
        for data, addr in quic.datagrams_to_send(now=self._loop.time()):
            send(data, addr)
        timer_at = quic.get_timer()
        timer = self._timer
        if timer is not None and self._timer_at != timer_at:
            timer.cancel()
            timer = self._timer = None
        if timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._on_quic_timer)
        self._timer_at = timer_at

    def _transmit_soon(self) -> None:
        """Coalesce the sends of one loop iteration into one pass over QUIC."""
        if self._transmit_handle is None and not self._in_events and not self._gone:
            self._transmit_handle = self._loop.call_soon(self._transmit)

    def _process_events(self) -> None:
        quic = self._quic
        self._in_events = True
        try:
            event = quic.next_event()
            while event is not None:
                if type(event) is StreamDataReceived:
                    stream_id = event.stream_id
                    if not stream_id & 3 and stream_id not in self._streams:
                        self._open_stream(stream_id)
                    self._h3_event(event)
                elif type(event) is StreamReset or type(event) is StopSendingReceived:
                    self._h3_event(event)
                    self._peer_cancelled(event.stream_id, type(event) is StreamReset)
                elif type(event) is ConnectionIdIssued:
                    self._endpoint.route(event.connection_id, self)
                elif type(event) is ConnectionIdRetired:
                    self._endpoint.unroute(event.connection_id)
                elif type(event) is ProtocolNegotiated:
                    if event.alpn_protocol == "h3":
                        self._h3 = H3Session(quic)
                elif type(event) is HandshakeCompleted:
                    self._handshake_completed()
                elif type(event) is ConnectionTerminated:
                    self._terminated()
                    return
                event = quic.next_event()
        finally:
            self._in_events = False

    def _h3_event(self, event: QuicEvent) -> None:
        h3 = self._h3
        if h3 is None:
            return
        for h3_event in h3.handle_event(event):
            if type(h3_event) is DataReceived:
                self._on_data(h3_event)
            elif type(h3_event) is HeadersReceived:
                self._on_headers(h3_event)

    def _handshake_completed(self) -> None:
        self.handshaking = False
        self._endpoint.handshake_done(self)
        if self._h3 is None:
            self._close(ErrorCode.H3_GENERAL_PROTOCOL_ERROR, "no HTTP/3")
        elif self._draining:
            self._send_goaway()
            self._close_if_idle()

    # -- graceful stop -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Send GOAWAY, finish the requests already started, then close.

        GOAWAY names the first request stream that will not be served: streams the client
        opened later are refused with H3_REQUEST_REJECTED, which tells it they were never
        processed and are safe to retry elsewhere.
        """
        if self._draining or self._gone:
            return
        self._draining = True
        if self.handshaking:
            return  # GOAWAY once the handshake completes (no request can be in flight yet)
        if self._h3 is None:
            self._close(ErrorCode.H3_NO_ERROR, "server stopping")
            return
        self._send_goaway()
        # Let GOAWAY leave in its own datagram before a CONNECTION_CLOSE for an idle one.
        self._loop.call_soon(self._close_if_idle)

    def abort(self) -> None:
        """Close now (the graceful deadline passed, or the connection broke)."""
        if self._gone:
            return
        self._close(ErrorCode.H3_NO_ERROR, "server stopping")
        self._terminated()

    def _send_goaway(self) -> None:
        h3 = self._h3
        if h3 is None or self._closing or self._goaway_id is not None:
            return
        self._goaway_id = self._next_request_id
        # aioquic has no API for GOAWAY; its control stream id is the only private part.
        control = h3._local_control_stream_id
        if control is not None:
            frame = encode_frame(FrameType.GOAWAY, encode_uint_var(self._goaway_id))
            self._quic.send_stream_data(control, frame)
        self._transmit()

    def _close_if_idle(self) -> None:
        """While draining: close once every response is complete and acknowledged.

        CONNECTION_CLOSE discards whatever QUIC has not sent yet, so closing as soon as the
        last response is queued would lose it; ACKs bring us back here.
        """
        if (
            self._draining
            and not self._closing
            and not self._gone
            and all(stream.done for stream in self._streams.values())
            and not self._quic.responses_unacknowledged()
        ):
            self._close(ErrorCode.H3_NO_ERROR, "server stopping")

    @property
    def send_backlog(self) -> int:
        """Response bytes this connection holds in QUIC send buffers (all streams)."""
        backlog = self._quic.send_backlog
        return sum(backlog(stream_id) for stream_id in self._streams)

    # -- request streams ---------------------------------------------------------------------------

    def _open_stream(self, stream_id: int) -> None:
        if self._closing:
            return
        goaway = self._goaway_id
        if goaway is not None and stream_id >= goaway:
            if stream_id not in self._rejected:
                self._rejected.add(stream_id)
                self._reset(stream_id, ErrorCode.H3_REQUEST_REJECTED)
                self._stop(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return
        if stream_id in self._rejected:
            return
        now = self._loop.time()
        self._streams[stream_id] = _Stream(self, stream_id, now)
        if stream_id >= self._next_request_id:
            self._next_request_id = stream_id + 4
        self._arm_watch(now + self._ctx.timeouts.header)

    def _on_headers(self, event: HeadersReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        if stream.request is None and not stream.done:
            self._on_request(stream, event.headers, event.stream_ended)
        elif event.stream_ended:  # trailers end the body; bext does not pass them on
            self._body_ended(stream)

    def _on_data(self, event: DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        body = stream.body
        if stream.receiving and body is not None:
            data = event.data
            if data:
                body.feed(data)
                stream.body_activity = now = self._loop.time()
                if self._ctx.timeouts.body_min_rate:
                    check = stream.rate.first_bytes(now, BODY_RATE_WINDOW)
                    if check is not None:
                        self._arm_watch(check)
                if body.received > self._ctx.limits.max_body_size:
                    self._body_failed(stream, 413, "request body larger than max_body_size")
                    return
            if event.stream_ended:
                self._body_ended(stream)
        elif event.stream_ended:
            stream.receive_done = True
            self._forget_if_finished(stream)

    def _body_ended(self, stream: _Stream) -> None:
        stream.receive_done = True
        if stream.receiving:
            stream.receiving = False
            self._quic.flowing.discard(stream.stream_id)
            if stream.body is not None:
                stream.body.end()
        self._forget_if_finished(stream)

    def _on_request(self, stream: _Stream, fields: Headers, ended: bool) -> None:
        ctx = self._ctx
        if ended:
            stream.receive_done = True
        try:
            head = parse_request_head(fields, ctx.limits)
        except ProtocolError as exc:
            self._refuse(stream, None, exc.status, exc.reason)
            return
        now = self._loop.time()
        body = EMPTY_BODY if ended else RequestBody(stream, head.expect_continue)
        request = Request.from_head(head, "https", self._client, self._server_port, body, now)
        stream.request = request
        if head.content_length is not None and head.content_length > ctx.limits.max_body_size:
            self._refuse(stream, request, 413, "request body larger than max_body_size")
            return
        if not ended:
            stream.body = body
            stream.receiving = True
            stream.body_activity = now
            self._quic.flowing.add(stream.stream_id)
            self._arm_watch(now + ctx.timeouts.body)
        stream.exchange = start_exchange(ctx, request, stream)

    def _refuse(self, stream: _Stream, request: Request | None, status: int, reason: str) -> None:
        """Answer a request bext will not pass to the pipeline, and stop its body."""
        log.info("client %s: %d %s", self._client[0], status, reason)
        accept = request.header(b"accept") if request is not None else None
        body = request is None or with_body(request, status)
        self._send_simple(stream, error_response(status, accept, reason), body)

    # -- responses ---------------------------------------------------------------------------------

    def _send_simple(self, stream: _Stream, response: Response, with_body: bool) -> None:
        h3 = self._h3
        if stream.done or self._closing or h3 is None:
            return
        status = response.status
        length = None if status in NO_BODY_STATUS else len(response.body)
        fields = self._head_fields(status, response.headers, length)
        body = response.body if with_body else b""
        trailers = _trailers(response) if with_body else None
        stream_id = stream.stream_id
        stream.started = True
        try:
            if body:
                h3.send_headers(stream_id, fields)
                h3.send_data(stream_id, body, trailers is None)
            else:
                h3.send_headers(stream_id, fields, trailers is None)
            if trailers is not None:
                h3.send_headers(stream_id, trailers, True)
        except (RuntimeError, ValueError, H3ProtocolError) as exc:  # reset meanwhile
            log.debug("HTTP/3 stream %d: %s", stream_id, exc)
            self._abandon(stream)
            return
        self._finish(stream, status, len(body))
        self._transmit_soon()

    def _send_head(
        self, stream: _Stream, response: Response, length: int | None, with_body: bool
    ) -> None:
        h3 = self._h3
        if stream.done or self._closing or h3 is None:
            return  # the exchange finds out at its next chunk
        status = response.status
        fields = self._head_fields(
            status, response.headers, None if status in NO_BODY_STATUS else length
        )
        stream.started = True
        try:
            h3.send_headers(stream.stream_id, fields, not with_body)
        except (RuntimeError, ValueError, H3ProtocolError) as exc:  # reset meanwhile
            log.debug("HTTP/3 stream %d: %s", stream.stream_id, exc)
            self._abandon(stream)
            return
        self._transmit_soon()
        if not with_body:
            self._finish(stream, status, 0)

    async def _ready(self, stream: _Stream) -> None:
        """Wait while the stream holds more than ``send_buffer`` bytes QUIC has not sent."""
        if stream.gone:
            raise ConnectionResetError("stream closed")
        if self._quic.send_backlog(stream.stream_id) > self._limits.send_buffer:
            await self._drain(stream)

    def _send_data(self, stream: _Stream, data: bytes) -> None:
        h3 = self._h3
        if stream.done or self._closing or h3 is None:
            raise ConnectionResetError("stream closed")
        h3.send_data(stream.stream_id, data, False)
        self._transmit_soon()

    def _send_end(self, stream: _Stream, response: Response, sent: int) -> None:
        h3 = self._h3
        if stream.done or self._closing or h3 is None:
            return
        trailers = _trailers(response)
        try:
            if trailers is None:
                h3.send_data(stream.stream_id, b"", True)
            else:
                h3.send_headers(stream.stream_id, trailers, True)
        except (RuntimeError, ValueError, H3ProtocolError) as exc:  # reset meanwhile
            log.debug("HTTP/3 stream %d: %s", stream.stream_id, exc)
            self._abandon(stream)
            return
        self._transmit_soon()
        self._finish(stream, response.status, sent)

    async def _drain(self, stream: _Stream) -> None:
        """Wait until ACKs bring the stream's send backlog under the low water mark."""
        waiter = self._loop.create_future()
        self._waiters[stream.stream_id] = waiter
        stream.blocked_since = now = self._loop.time()
        self._arm_watch(now + self._ctx.timeouts.send)
        try:
            await waiter
        finally:
            self._waiters.pop(stream.stream_id, None)
            stream.blocked_since = None

    def _wake_senders(self) -> None:
        low = self._low_water
        backlog = self._quic.send_backlog
        for stream_id, waiter in self._waiters.items():
            if not waiter.done() and backlog(stream_id) <= low:
                waiter.set_result(None)

    def _head_fields(self, status: int, headers: Headers, length: int | None) -> Headers:
        fields: Headers = [(b":status", _STATUS.get(status) or b"%d" % status)]
        fields.extend(self._ctx.header_fields())
        for name, value in headers:
            lowered = name.lower()
            if lowered not in _RESPONSE_DROP:
                fields.append((lowered, value))
        if length is not None:
            fields.append((b"content-length", b"%d" % length))
        return fields

    def _finish(self, stream: _Stream, status: int, sent: int) -> None:
        stream.done = True
        stream.exchange = None
        request = stream.request
        if request is not None:
            self._ctx.record(request, status, sent, self._loop.time())
        else:
            self._ctx.record_unparsed(self._client[0], status, sent)
        if not stream.receive_done:
            # RFC 9114 §4.1: the response is complete; the rest of the body is not needed.
            self._stop_receiving(stream, ErrorCode.H3_NO_ERROR)
        self._forget_if_finished(stream)
        if self._draining:
            self._close_if_idle()

    # -- request bodies ----------------------------------------------------------------------------

    def _resume_body(self, stream: _Stream) -> None:
        stream.paused = False
        if stream.receiving:
            stream.body_activity = now = self._loop.time()
            stream.rate.release(now)
            self._quic.flowing.add(stream.stream_id)
            self._transmit_soon()  # MAX_STREAM_DATA now, not with the next ACK

    def _send_continue(self, stream: _Stream) -> None:
        h3 = self._h3
        if h3 is not None and not stream.started and not stream.done and not self._closing:
            try:
                h3.send_headers(stream.stream_id, [(b":status", b"100")])
            except (RuntimeError, ValueError, H3ProtocolError):
                return
            self._transmit_soon()

    def _body_failed(self, stream: _Stream, status: int, reason: str) -> None:
        """The body cannot complete: answer ``status`` if nothing was sent yet, else reset."""
        body = stream.body
        if body is not None:
            body.fail(reason)
        self._stop_receiving(stream, ErrorCode.H3_NO_ERROR)
        if stream.done:
            return
        if stream.started:
            self._abort_stream(stream, ErrorCode.H3_REQUEST_INCOMPLETE)
            return
        self._cancel_task(stream)
        self._refuse(stream, stream.request, status, reason)

    def _stop_receiving(self, stream: _Stream, code: int) -> None:
        if stream.receiving:
            stream.receiving = False
            self._quic.flowing.discard(stream.stream_id)
        if not stream.receive_done and not stream.stopped:
            stream.stopped = True
            self._stop(stream.stream_id, code)
        body = stream.body
        if body is not None:
            body.discard()

    # -- cancellation ------------------------------------------------------------------------------

    def _peer_cancelled(self, stream_id: int, reset: bool) -> None:
        """The client reset its side (``reset``) or asked us to stop sending."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if reset:
            stream.receive_done = True
        if stream.done:
            self._forget_if_finished(stream)  # e.g. the reset answering our STOP_SENDING
            return
        if not self._guard.cancelled(self._loop.time()):
            log.warning("client %s: too many cancelled streams, closing", self._client[0])
            self._close(ErrorCode.H3_EXCESSIVE_LOAD, "too many cancelled streams")
            return
        self._abort_stream(stream, ErrorCode.H3_REQUEST_CANCELLED)

    def _abort_stream(self, stream: _Stream, code: int) -> None:
        """Abandon a request: cancel its work, reset what is left of the stream."""
        body = stream.body
        if body is not None and stream.receiving:
            body.fail("the request was cancelled")
        self._stop_receiving(stream, code)
        if not stream.done:
            self._reset(stream.stream_id, code)
        self._abandon(stream)

    def _abandon(self, stream: _Stream) -> None:
        stream.done = True
        self._cancel_task(stream)
        self._forget_if_finished(stream)
        if self._draining:
            self._close_if_idle()

    def _cancel_task(self, stream: _Stream) -> None:
        exchange = stream.exchange
        if exchange is not None:
            stream.exchange = None
            exchange.cancel()

    def _forget_if_finished(self, stream: _Stream) -> None:
        if stream.done and stream.receive_done:
            stream_id = stream.stream_id
            if self._streams.pop(stream_id, None) is not None:
                self._quic.flowing.discard(stream_id)
                h3 = self._h3
                if h3 is not None:
                    # aioquic forgets a stream only when it saw both halves end; one that
                    # bext reset would otherwise stay in its table until the connection ends.
                    h3._stream.pop(stream_id, None)

    def _reset(self, stream_id: int, code: int) -> None:
        try:
            self._quic.reset_stream(stream_id, code)
        except ValueError:
            return
        self._transmit_soon()

    def _stop(self, stream_id: int, code: int) -> None:
        try:
            self._quic.stop_stream(stream_id, code)
        except ValueError:
            return
        self._transmit_soon()

    # -- closing -----------------------------------------------------------------------------------

    def _close(self, code: int, reason: str) -> None:
        """Queue CONNECTION_CLOSE and drop all request work; QUIC ends the connection."""
        if self._closing or self._gone:
            return
        self._closing = True
        self._release_streams()
        self._quic.close(error_code=code, reason_phrase=reason)
        if self._in_events:
            return  # the caller transmits after processing
        self._transmit()

    def _terminated(self) -> None:
        if self._gone:
            return
        self._gone = True
        self._closing = True
        self._release_streams()
        self._watch.cancel()
        for handle in (self._timer, self._transmit_handle):
            if handle is not None:
                handle.cancel()
        self._timer = None
        self._transmit_handle = None
        self._ctx.leave(self)
        self._endpoint.connection_gone(self)

    def _release_streams(self) -> None:
        for stream in self._streams.values():
            body = stream.body
            if body is not None and stream.receiving:
                body.fail("connection closed")
            stream.receiving = False
            stream.done = True
            self._cancel_task(stream)
        self._streams.clear()
        self._quic.flowing.clear()

    # -- timeouts ----------------------------------------------------------------------------------

    def _arm_watch(self, deadline: float) -> None:
        if not self._gone:
            self._watch.arm(deadline)

    def _on_watch(self) -> None:
        """Handshake, request head, request body and send timeouts, checked lazily."""
        if self._gone or self._closing:
            return
        now = self._loop.time()
        upcoming: list[float] = []
        if self.handshaking:
            deadline = self._created + self._limits.handshake_timeout
            if deadline <= now:
                log.info("client %s: QUIC handshake timeout", self._client[0])
                self._close(ErrorCode.H3_NO_ERROR, "handshake timeout")
                return
            upcoming.append(deadline)
        timeouts = self._ctx.timeouts
        for stream in list(self._streams.values()):
            if stream.done:
                continue
            if stream.request is None:
                deadline = stream.opened + timeouts.header
                if deadline <= now:
                    self._abort_stream(stream, ErrorCode.H3_REQUEST_INCOMPLETE)
                    continue
                upcoming.append(deadline)
            if stream.receiving and not stream.paused:
                deadline = stream.body_activity + timeouts.body
                if deadline <= now:
                    self._body_failed(stream, 408, "request body timeout")
                    continue
                upcoming.append(deadline)
                body = stream.body
                if timeouts.body_min_rate and body is not None:
                    rate_deadline = stream.rate.check(
                        now, body.received, timeouts.body_min_rate, BODY_RATE_WINDOW
                    )
                    if rate_deadline is None:
                        self._body_failed(stream, 408, "request body too slow")
                        continue
                    upcoming.append(rate_deadline)
            if stream.blocked_since is not None:
                deadline = stream.blocked_since + timeouts.send
                if deadline <= now:
                    log.info("client %s: send timeout on stream %d", self._client[0],
                             stream.stream_id)  # fmt: skip
                    self._abort_stream(stream, ErrorCode.H3_REQUEST_CANCELLED)
                    continue
                upcoming.append(deadline)
        if upcoming:
            self._arm_watch(min(upcoming))


def _trailers(response: Response) -> Headers | None:
    """Trailer fields, if the response carries any (``trailers``: a list or a callable)."""
    trailers = getattr(response, "trailers", None)
    if trailers is None:
        return None
    if callable(trailers):
        trailers = trailers()
    fields: Headers = []
    for name, value in trailers or ():
        lowered = name.lower()
        if lowered[:1] != b":" and lowered not in _RESPONSE_DROP:
            fields.append((lowered, value))
    return fields or None
