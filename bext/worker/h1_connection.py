"""One HTTP/1.1 client connection: bytes in, parser events, pipeline, bytes out.

This is the only place that knows both the socket and HTTP/1.1. The parser is sans-IO
(:mod:`bext.protocol.h1` or :mod:`bext.protocol.h1_ref`), the pipeline knows nothing of
HTTP/1.1, and framing is left to :mod:`bext.protocol.h1_writer`.

Pipelined requests are parsed as they arrive and queued; responses go out strictly in
order. Reading pauses when too many requests queue up or when a request body is not being
consumed fast enough, so one connection's memory stays bounded.

Timeouts use one lazily re-armed timer per connection (:mod:`bext.worker.deadlines`):
state changes only store a timestamp, and the timer, when it fires, works out which
deadline (if any) has passed and re-arms itself for the next one. No ``wait_for`` per read,
no timer churn per request.

A plain connection whose first bytes are the HTTP/2 preface (h2c with prior knowledge,
RFC 9113 §3.3) is handed over to :class:`~bext.worker.h2_connection.H2Connection`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from typing import TYPE_CHECKING, cast

from bext.http.body import EMPTY_BODY, RequestBody
from bext.http.errors import error_response
from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from bext.protocol.events import BodyChunk, Event, MessageEnd, ProtocolError, RequestHead
from bext.protocol.h1_writer import (
    CONTINUE,
    LAST_CHUNK,
    chunk,
    response_head,
    response_head_parts,
    status_line,
)
from bext.protocol.h2_guard import PREFACE
from bext.proxy.tunnel import Tunnel
from bext.runtime.outbox import HeldBytes
from bext.worker.context import BODY_RATE_WINDOW, WorkerContext
from bext.worker.deadlines import BodyRate, LazyTimer
from bext.worker.exchange import NO_BODY_STATUS, Exchange
from bext.worker.exchange import start as start_exchange
from bext.worker.h2_connection import H2Connection

if TYPE_CHECKING:
    from bext.worker.pipeline import Route

log = logging.getLogger("bext")

_MAX_QUEUED = 32
"""Pipelined requests parsed ahead of the one being answered before reading pauses."""

_PAUSED_BY_BODY = 1
_PAUSED_BY_QUEUE = 2
_PAUSED_BY_ERROR = 4
_PAUSED_BY_UPGRADE = 8

DRAIN_IDLE_GRACE = 1.0
"""While draining, how long an idle connection may still send a request before closing."""
_LARGE_BODY = 64 * 1024
_NO_EVENTS: list[Event] = []
"""Shared, never appended to: what ``_events`` holds between reads."""


class H1Connection(asyncio.Protocol):
    metric_version = 0
    """Index in :data:`bext.shm.metrics.VERSIONS` (connections by HTTP version)."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._held = HeldBytes(self._loop, self)  # responses for the end of the loop's turn
        self._parser = ctx.parser_factory(ctx.limits)
        self._transport: asyncio.Transport | None = None
        self._client = ("", 0)
        self._server_port = 0
        self._queue: deque[tuple[Request | ProtocolError, bool]] = deque()
        self._receiving: Request | None = None
        self._current: Request | None = None
        self._keep_alive = True
        self._response_started = False
        self._exchange: Exchange | None = None
        self._chunked = False  # the response being streamed uses chunked framing
        self._served = 0
        self._driving = False
        self._read_pauses = 0
        self._closed = False
        self._input_failed = False
        self._eof = False  # the client half-closed: nothing more will arrive
        self._lingering = False  # closing: input is read and dropped until EOF or deadline
        self._events: list[Event] = _NO_EVENTS  # the read being handled's events, and the head of
        self._head: RequestHead | None = None  # the last request: what follows it is unread
        self._tunnel: Tunnel | None = None
        self._plain = True  # no TLS: sendfile is possible, h2c may be spoken
        self._sniff = False  # the first bytes may still turn out to be the HTTP/2 preface
        self._sniffed = b""
        # Write-side flow control.
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Timeout bookkeeping: timestamps only; see _on_timer.
        self._head_started: float | None = None
        self._body_activity = 0.0
        self._rate = BodyRate()  # body_min_rate of the body being received
        self._idle_since: float | None = None
        self._write_paused_since = 0.0
        self._timer = LazyTimer(self._loop, self._on_timer)

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self._client = (peer[0], peer[1])
        if isinstance(sock, tuple):
            self._server_port = sock[1]
        ctx = self._ctx
        if not ctx.admit(self, self._client[0]):
            transport.abort()
            self._closed = True
            return
        # On TLS the "socket" extra is the raw socket underneath: never sendfile to it.
        self._plain = transport.get_extra_info("sslcontext") is None
        self._sniff = self._plain and ctx.h2.h2c
        now = self._loop.time()
        self._head_started = now  # a new connection has header_timeout to send its request
        self._timer.arm(now + ctx.timeouts.header)
        if ctx.shared.stopping:
            # Accepted just as the worker began to drain: its request is served (with
            # Connection: close), never reset.
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.from_client(data)
            return
        if self._input_failed:
            return
        if self._sniff:
            data = self._sniff_preface(data)
            if not data:
                return
        self._ctx.counters.received(len(data))
        now = self._loop.time()
        self._idle_since = None
        parser = self._parser
        try:
            events = parser.feed(data)
        except ProtocolError as exc:
            self._fail_input(exc)
            return
        self._events = events
        for event in events:
            kind = type(event)
            if kind is RequestHead:
                self._on_head(event, now)  # type: ignore[arg-type]
            elif kind is BodyChunk:
                self._body_activity = now
                receiving = self._receiving
                if receiving is not None:
                    receiving.body.feed(event.data)  # type: ignore[union-attr]
                    if self._ctx.timeouts.body_min_rate:
                        check = self._rate.first_bytes(now, BODY_RATE_WINDOW)
                        if check is not None:
                            self._timer.arm(check)
            else:
                receiving = self._receiving
                if receiving is not None:
                    self._receiving = None
                    receiving.body.end()
        # Only a close decided while they are handled needs them; an idle connection must
        # not hold on to the last read's body chunks.
        self._events = _NO_EVENTS
        pending_error = parser.pending_error
        if pending_error is not None:
            self._fail_input(pending_error)
            return
        if parser.in_head:
            if self._head_started is None:
                self._head_started = now
                self._timer.arm(now + self._ctx.timeouts.header)
        else:
            self._head_started = None
        if parser.upgrade_pending:
            # The bytes after an Upgrade request belong to the other protocol if the handler
            # switches (101), and are unusable otherwise: stop reading until it decides.
            self._pause_reading(_PAUSED_BY_UPGRADE)

    def eof_received(self) -> bool:
        self._eof = True
        if self._held.data is not None:
            # Returning False closes the transport, and a close sends only what the
            # transport has: the held responses go to it first.
            self.send_held()
        if self._lingering:
            return False  # what we waited for: close now
        receiving = self._receiving
        if receiving is not None:
            self._receiving = None
            receiving.body.fail("client closed the connection")
        if self._current is None and not self._queue:
            return False  # nothing in flight: let the transport close
        self._input_failed = True
        return True  # half-close: finish the responses in flight, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._held.take()  # dropped: the client is gone
        self._ctx.leave(self)
        if self._tunnel is not None:
            self._tunnel.close()
        self._timer.cancel()
        if self._receiving is not None:
            self._receiving.body.fail("client closed the connection")
            self._receiving = None
        if self._exchange is not None:
            self._exchange.cancel()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("client closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._tunnel is not None:
            self._tunnel.client_write_paused(True)
            return
        self._write_paused_since = now = self._loop.time()
        self._timer.arm(now + self._ctx.timeouts.send)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._tunnel is not None:
            self._tunnel.client_write_paused(False)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- h2c prior knowledge -----------------------------------------------------------------

    def _sniff_preface(self, data: bytes) -> bytes:
        """Decide between HTTP/1.1 and HTTP/2 from a plain connection's first bytes.

        Returns what the HTTP/1.1 parser gets: nothing while the bytes so far could still
        be the 24-byte preface, nothing after switching, everything buffered otherwise.
        Only the first read(s) of a connection come here.
        """
        buffered = self._sniffed + data if self._sniffed else data
        if len(buffered) < len(PREFACE) and PREFACE.startswith(buffered):
            self._sniffed = buffered
            return b""
        self._sniff = False
        self._sniffed = b""
        if not buffered.startswith(PREFACE):
            return buffered
        # Hand the transport to HTTP/2. It was counted as opened here and is counted as
        # closed by the H2Connection.
        transport = self._transport
        assert transport is not None
        self._closed = True
        self._timer.cancel()
        h2 = H2Connection(self._ctx)
        self._ctx.hand_over(self, h2)
        transport.set_protocol(h2)
        h2.takeover(transport, buffered)
        return b""

    # -- BodyFlow (called by RequestBody) ---------------------------------------------------

    def pause_body(self) -> None:
        self._rate.hold(self._loop.time())
        self._pause_reading(_PAUSED_BY_BODY)

    def resume_body(self) -> None:
        self._body_activity = now = self._loop.time()
        self._rate.release(now)
        self._resume_reading(_PAUSED_BY_BODY)

    def send_continue(self) -> None:
        if not self._response_started and self._transport is not None and not self._closed:
            self._write(self._transport, CONTINUE)

    # -- graceful stop --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Drain: finish in-flight work, answer with ``Connection: close``, then close.

        An idle connection is not closed at once: a keep-alive client may be sending its
        next request right now, and a connection accepted just before the stop may not
        have delivered its first one yet. Closing under them would reset a request
        nobody saw. They get ``DRAIN_IDLE_GRACE`` to send it; it is answered, with close.
        """
        idle = self._current is None and not self._queue and self._receiving is None
        if idle and not self._parser.in_head:
            self._idle_since = now = self._loop.time()
            self._head_started = None
            self._timer.arm(now + DRAIN_IDLE_GRACE)

    def abort(self) -> None:
        self._held.take()
        if self._transport is not None:
            self._transport.abort()

    # -- requests ---------------------------------------------------------------------------

    def _on_head(self, head: RequestHead, now: float) -> None:
        self._head = head
        has_body = head.has_body
        quick = self._ctx.quick
        if (
            quick is not None
            and not has_body
            and self._current is None
            and not self._queue
            and head.upgrade is None
        ):
            answer = quick(head.method, head.host, head.target, self._ctx.scheme, head.headers)
            if answer is not None:
                self._send_quick(head, answer[0], answer[1], now)
                return
        body = RequestBody(self, head.expect_continue) if has_body else EMPTY_BODY
        client = self._client
        # Request.from_head, spelled out: this is the hottest path of the server.
        request = Request(head.method, head.target, head.headers, head.http_version,
                          self._ctx.scheme, client[0], client[1], self._server_port, body, now,
                          head.host)  # fmt: skip
        if has_body:
            self._receiving = request
            self._body_activity = now
            self._rate = BodyRate()
            self._timer.arm(now + self._ctx.timeouts.body)
        keep_alive = head.keep_alive and head.upgrade is None
        self._queue.append((request, keep_alive))
        if self._current is None:
            self._drive()
        elif len(self._queue) >= _MAX_QUEUED:
            self._pause_reading(_PAUSED_BY_QUEUE)

    def _drive(self) -> None:
        """Answer queued requests in order until one needs to wait."""
        self._driving = True
        ctx = self._ctx
        try:
            while self._current is None and self._queue and not self._closed:
                request, keep_alive = self._queue.popleft()
                if isinstance(request, ProtocolError):
                    self._send_error(request)
                    return
                self._current = request
                self._response_started = False
                self._keep_alive = self._serve_one(keep_alive)
                self._exchange = start_exchange(ctx, request, self, quick=False)
        finally:
            self._driving = False
        if self._current is None and not self._closed:
            if self._read_pauses & _PAUSED_BY_QUEUE:
                self._resume_reading(_PAUSED_BY_QUEUE)
            if not self._queue and self._receiving is None and not self._parser.in_head:
                self._idle()

    def _serve_one(self, keep_alive: bool) -> bool:
        """Count a request about to be answered; whether the connection stays open after it
        (the client asked to keep it, the worker is not draining, the limit not reached)."""
        self._served += 1
        ctx = self._ctx
        return keep_alive and not ctx.shared.stopping and self._served < ctx.max_keepalive_requests

    def _idle(self) -> None:
        """Nothing in flight or queued: wait for the next request (or close)."""
        if self._input_failed:
            self._close()
            return
        ctx = self._ctx
        self._idle_since = now = self._loop.time()
        self._timer.arm(now + (DRAIN_IDLE_GRACE if ctx.shared.stopping else ctx.timeouts.keepalive))

    def _send_quick(self, head: RequestHead, response: Response, route: Route, now: float) -> None:
        """Answer from the quick lane: what :meth:`_drive`, the exchange, :meth:`send_whole`
        and :meth:`_finish` do for a shared response, without a Request or an exchange."""
        transport = self._transport
        if transport is None or self._closed:
            return
        ctx = self._ctx
        keep_alive = self._serve_one(head.keep_alive)
        status = response.status
        with_body = head.method != "HEAD" and status not in NO_BODY_STATUS
        sent = self._write_whole(
            transport, response, keep_alive, head.http_version == "1.0", with_body
        )
        if ctx.records_requests:
            request = Request.from_head(
                head, ctx.scheme, self._client, self._server_port, EMPTY_BODY, now
            )
            route.claim(request)
            ctx.record(request, status, sent, self._loop.time())
        else:  # what record() does with the rest unused
            ctx.counters.response(status, sent, route.index, self._loop.time() - now)
        if not keep_alive:
            self._close()
        elif not self._parser.in_head:
            self._idle()

    # -- Sender (bext.worker.exchange) ---------------------------------------------------------

    whole_limit = 1 << 62  # any body in memory goes out in one write (or two)

    @property
    def sends_files(self) -> bool:
        return self._plain  # TLS must encrypt the bytes: the exchange reads chunks

    @property
    def gone(self) -> bool:
        return self._closed or self._transport is None

    def refuse_reuse(self) -> None:
        self._keep_alive = False

    def _framing(self, request: Request) -> bool:
        """Settle the request body before answering; True to keep the connection."""
        body = request.body
        if not body.complete:
            if body.continue_pending:
                # The client still waits for "100 Continue" and may or may not send the body:
                # the connection cannot be reused reliably.
                self._keep_alive = False
            body.discard()
        return self._keep_alive

    def send_whole(self, request: Request, response: Response, with_body: bool) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        keep_alive = self._framing(request)
        self._response_started = True
        sent = self._write_whole(
            transport, response, keep_alive, request.http_version == "1.0", with_body
        )
        self._finish(request, response.status, sent, keep_alive)

    def _write_whole(
        self,
        transport: asyncio.Transport,
        response: Response,
        keep_alive: bool,
        http10: bool,
        with_body: bool,
    ) -> int:
        """Write a response whose body is in memory; returns the body bytes written."""
        status = response.status
        if response.shared:
            head = self._shared_head(response, keep_alive, http10)
        else:
            length = None if status in NO_BODY_STATUS else len(response.body)
            head = response_head(
                status, response.headers, self._ctx.preamble(), length, keep_alive, http10
            )
        body = response.body if with_body else b""
        if len(body) < _LARGE_BODY:
            # Written at the end of this turn of the loop (bext.runtime.outbox), after
            # what is held already; or now, with it, past the limit or when closing.
            now = self._held.add(transport, head + body)
            if now is not None:
                transport.write(now)
        else:
            self._write(transport, head)
            transport.write(body)
        return len(body)

    def send_held(self) -> None:
        """Write the responses :meth:`_write_whole` held (the outbox calls this at the end
        of the turn; anything that writes or closes calls it first)."""
        self._held.send(self._transport)

    def _write(self, transport: asyncio.Transport, data: bytes) -> None:
        """Write ``data`` now, after anything held."""
        if self._held.data is not None:
            self.send_held()
        transport.write(data)

    def _shared_head(self, response: Response, keep_alive: bool, http10: bool) -> bytes:
        """The head of a Response that goes out again and again: its fields are
        serialised once per framing, then only ``Date`` and ``Server`` are added."""
        status = response.status
        cache = response.wire_cache
        if cache is None:
            cache = response.wire_cache = {}
        key = (keep_alive, http10)
        tail = cache.get(key)
        if tail is None:
            length = None if status in NO_BODY_STATUS else len(response.body)
            tail = cache[key] = response_head_parts(
                status, response.headers, length, keep_alive, http10
            )
        return status_line(status) + self._ctx.preamble() + tail

    def send_head(
        self, request: Request, response: Response, length: int | None, with_body: bool
    ) -> None:
        transport = self._transport
        assert transport is not None
        keep_alive = self._framing(request)
        http10 = request.http_version == "1.0"
        if with_body and length is None and http10:
            keep_alive = False  # the end of the body is the end of the connection
        self._chunked = with_body and length is None and not http10
        self._keep_alive = keep_alive
        self._response_started = True
        self._write(
            transport,
            response_head(
                response.status, response.headers, self._ctx.preamble(), length, keep_alive, http10
            ),
        )
        if not with_body:
            self._finish(request, response.status, 0, keep_alive)

    async def ready(self) -> None:
        if self._write_paused:
            await self._drain()
        elif self._closed:
            raise ConnectionResetError("client closed the connection")

    def send_data(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._closed:
            raise ConnectionResetError("client closed the connection")
        self._write(transport, chunk(data) if self._chunked else data)

    def send_end(self, request: Request, response: Response, sent: int) -> None:
        if self._chunked and self._transport is not None:
            self._write(self._transport, LAST_CHUNK)
        self._finish(request, response.status, sent, self._keep_alive)

    def break_off(self) -> None:
        # No last chunk and no keep-alive: the client sees a truncated response.
        self.abort()

    async def send_file(self, request: Request, response: Response, file: FileBody) -> None:
        """Send a file range with ``os.sendfile``: the bytes never enter Python.

        uvloop has no ``loop.sendfile``, and refuses ``add_writer`` on a transport's own
        descriptor, so: let the transport flush the head, then call ``sendfile`` on the
        socket, and when the socket is full wait for writability on a ``dup`` of it.
        """
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        assert transport is not None and sock is not None
        corked = _cork(sock, 1)  # head and file in full segments (nginx's tcp_nopush)
        try:
            self.send_head(request, response, file.count, True)
            sent = await self._sendfile(transport, sock.fileno(), file.fd, file.offset,
                                        file.count)  # fmt: skip
            self.send_end(request, response, sent)
        except (ConnectionError, OSError) as exc:
            if not self._closed:
                log.info("client %s: file transfer aborted: %s", self._client[0], exc)
            self.abort()
        finally:
            file.close()
            if corked and not self._closed:
                _cork(sock, 0)  # the last partial segment goes now

    async def _sendfile(
        self, transport: asyncio.Transport, sock_fd: int, file_fd: int, offset: int, count: int
    ) -> int:
        transport.set_write_buffer_limits(0)  # pause_writing until the head is on the wire
        try:
            while transport.get_write_buffer_size():
                if self._write_paused:
                    await self._drain()
                else:
                    await asyncio.sleep(0)
            watch_fd = -1
            sent = 0
            try:
                while sent < count:
                    try:
                        n = os.sendfile(sock_fd, file_fd, offset + sent, min(count - sent, 1 << 20))
                    except BlockingIOError:
                        if watch_fd < 0:
                            watch_fd = os.dup(sock_fd)
                        await self._writable(watch_fd)
                        continue
                    if n == 0:
                        raise OSError(f"file shrank while being sent ({sent} of {count})")
                    sent += n
            finally:
                if watch_fd >= 0:
                    self._loop.remove_writer(watch_fd)
                    os.close(watch_fd)
            return sent
        finally:
            if not self._closed:
                transport.set_write_buffer_limits()

    async def _writable(self, fd: int) -> None:
        """Wait until the socket takes more data; the send timeout applies meanwhile."""
        self.pause_writing()  # no tunnel here: this only starts the send timeout
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        self._loop.add_writer(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self._loop.remove_writer(fd)
            self._drain_waiter = None
            self._write_paused = False

    def switch_protocols(self, request: Request, response: Response) -> bool:
        """Send the 101 and become a byte pipe (WebSocket); the request stays current."""
        transport = self._transport
        tunnel = response.tunnel
        assert transport is not None and tunnel is not None
        if not self._parser.upgrade_pending:
            return False  # the client did not ask to switch: never hand it a tunnel
        self._response_started = True
        self._write(
            transport, response_head(101, response.headers, self._ctx.preamble(), None, True, False)
        )
        self._timer.cancel()
        self._head_started = self._idle_since = None
        self._tunnel = tunnel
        tunnel.attach_client(transport, self._parser.take_upgrade_tail())
        self._read_pauses = 0
        transport.resume_reading()
        self._ctx.record(request, 101, 0, self._loop.time())
        return True

    async def _drain(self) -> None:
        if self._closed:
            raise ConnectionResetError("client closed the connection")
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None

    def _finish(self, request: Request, status: int, sent: int, keep_alive: bool) -> None:
        self._ctx.record(request, status, sent, self._loop.time())
        self._current = None
        self._exchange = None
        if not keep_alive or self._parser.upgrade_pending:
            # After an Upgrade request answered without switching, the bytes that follow
            # belong to a protocol nobody speaks here.
            self._close()
        elif not self._driving:
            self._drive()  # an asynchronous response finished: answer what queued meanwhile

    # -- failures and closing ------------------------------------------------------------------

    def _fail_input(self, exc: ProtocolError) -> None:
        """The client's bytes are unusable: answer with ``exc.status`` once it is our turn."""
        self._input_failed = True
        self._pause_reading(_PAUSED_BY_ERROR)
        self._head_started = None
        receiving = self._receiving
        if receiving is not None:
            self._receiving = None
            receiving.body.fail(exc.reason)
            if receiving is self._current:
                if not self._response_started:
                    if self._exchange is not None:
                        self._exchange.cancel()
                        self._exchange = None
                    self._current = None
                    self._send_error(exc)
                else:
                    self._keep_alive = False
                return
            if self._queue and self._queue[-1][0] is receiving:
                self._queue.pop()
        self._queue.append((exc, False))
        if self._current is None:
            self._drive()

    def _send_error(self, exc: ProtocolError) -> None:
        log.info("client %s: %d %s", self._client[0], exc.status, exc.reason)
        transport = self._transport
        if transport is not None and not self._closed:
            response = error_response(exc.status, None, exc.reason)
            self._response_started = True
            self._ctx.record_unparsed(self._client[0], exc.status, len(response.body))
            self._write(
                transport,
                response_head(
                    exc.status,
                    response.headers,
                    self._ctx.preamble(),
                    len(response.body),
                    False,
                    False,
                )
                + response.body,
            )
        self._close()

    def _close(self) -> None:
        """Close once what is buffered is sent; linger first if input may be unread.

        Closing a socket with unread input makes the kernel send a RST, which can destroy
        responses the client has not read yet (pipelined requests after the last one we
        answer, an upload we refused half way). So, as nginx's lingering close: send FIN
        where the transport can (plain TCP), then read and drop what the client still
        sends until it closes or ``lingering_time`` passes.
        """
        transport = self._transport
        if self._closed or transport is None:
            return
        if self._held.data is not None:
            self.send_held()
        self._closed = True
        linger = self._ctx.timeouts.lingering
        # Only when input is known to be unread (as nginx's "lingering_close on"): an idle
        # keep-alive connection closes at once, and over TLS, which cannot half-close, a
        # client waiting for the close never waits for the linger.
        unread = (
            self._read_pauses
            or self._queue
            or self._events_unhandled()
            or self._receiving is not None
            or self._parser.in_head
            or self._input_failed
        )
        if linger <= 0 or self._eof or not unread or self._tunnel is not None:
            transport.close()  # flushes what is buffered first
            return
        self._lingering = self._input_failed = True
        self._queue.clear()
        self._read_pauses = 0
        transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()  # after what is buffered: the client sees the end now
        self._timer.cancel()
        self._timer.arm(self._loop.time() + linger)

    def _events_unhandled(self) -> bool:
        """Whether the last read held more than the request being answered (pipelining)."""
        events = self._events
        head = self._head
        if len(events) <= 2 or head is None:
            return False
        for index, event in enumerate(events):
            if event is head:
                return any(type(later) is not MessageEnd for later in events[index + 1 :])
        return False

    def _pause_reading(self, reason: int) -> None:
        if not self._read_pauses and self._transport is not None and not self._closed:
            self._transport.pause_reading()
        self._read_pauses |= reason

    def _resume_reading(self, reason: int) -> None:
        if not self._read_pauses & reason:
            return
        self._read_pauses &= ~reason
        if not self._read_pauses and self._transport is not None and not self._closed:
            self._transport.resume_reading()

    # -- timeouts ------------------------------------------------------------------------------

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
        if self._head_started is not None and not self._input_failed:
            deadline = self._head_started + timeouts.header
            if deadline <= now:
                self._fail_input(ProtocolError(408, "request header timeout"))
                return
            upcoming.append(deadline)
        receiving = self._receiving
        if receiving is not None and not self._read_pauses & _PAUSED_BY_BODY:
            deadline = self._body_activity + timeouts.body
            if deadline <= now:
                self._fail_input(ProtocolError(408, "request body timeout"))
                return
            upcoming.append(deadline)
            if timeouts.body_min_rate:
                rate_deadline = self._rate.check(
                    now, receiving.body.received, timeouts.body_min_rate, BODY_RATE_WINDOW
                )
                if rate_deadline is None:
                    self._fail_input(ProtocolError(408, "request body too slow"))
                    return
                upcoming.append(rate_deadline)
        if self._idle_since is not None:
            idle_limit = DRAIN_IDLE_GRACE if self._ctx.shared.stopping else timeouts.keepalive
            deadline = self._idle_since + idle_limit
            if deadline <= now:
                self._close()
                return
            upcoming.append(deadline)
        if upcoming:
            self._timer.arm(min(upcoming))


def _cork(sock: socket.socket, on: int) -> bool:
    """Set ``TCP_CORK`` on a connection's socket; False where it cannot be (a Unix socket)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)
    except OSError:
        return False
    return True


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
