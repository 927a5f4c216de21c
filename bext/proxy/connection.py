"""One keep-alive HTTP/1.1 connection to an upstream server (Gunicorn, Uvicorn).

The response head is awaited as a future, or handed to a listener at the end of the read
that completed it (the proxy's warm-connection path: no scheduled call); the body is
pushed into a
:class:`~bext.proxy.spill.SpillBuffer` as fast as the upstream sends it, and the
connection goes back to its pool the moment the response is complete, whether or not the
client has read it yet. That is what frees a sync Gunicorn worker from a slow client.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import cast

import httptools

from bext.protocol.events import Headers
from bext.proxy.spill import SpillBuffer
from bext.proxy.tunnel import Tunnel
from bext.runtime.outbox import HeldBytes


class UpstreamError(Exception):
    """Talking to the upstream failed; the flags say whether trying again is safe.

    ``connect_failed``: the request never reached the upstream (any method may go to the
    next server). ``no_response``: not one response byte arrived. ``reused``: it happened on
    a pooled connection that had served before, the signature of a keep-alive race.
    """

    status = 502

    def __init__(
        self,
        reason: str,
        *,
        connect_failed: bool = False,
        no_response: bool = True,
        reused: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect_failed = connect_failed
        self.no_response = no_response
        self.reused = reused


class UpstreamTimeout(UpstreamError):
    status = 504


class ResponseHead:
    __slots__ = ("content_length", "elapsed", "headers", "http_version", "keep_alive", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        http_version: str,
        keep_alive: bool,
        content_length: int | None,
        elapsed: float = 0.0,
    ) -> None:
        self.status = status
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.elapsed = elapsed
        """Seconds from the request head's write to the read that completed this head."""


HeadListener = Callable[["asyncio.Future[ResponseHead]"], None]
"""What :meth:`UpstreamConnection.begin` calls when the response head (or a failure) is in."""


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, read_timeout: float, on_idle: Callable[[UpstreamConnection], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self._held = HeldBytes(self.loop, self)  # a request head for the end of the turn
        self._read_timeout = read_timeout
        self._on_idle = on_idle
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self.request_sent = True
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # The response in progress.
        self._parser: httptools.HttpResponseParser | None = None
        self._head_waiter: asyncio.Future[ResponseHead] | None = None
        self._listener: tuple[HeadListener, asyncio.Future[ResponseHead]] | None = None
        self._body: SpillBuffer | None = None
        self._headers: Headers = []
        self._received = 0
        self._head_only = False
        self._message_done = False
        self._interim = False  # the message being parsed is a 1xx interim response
        self._last_read = 0.0
        self._sent_at = 0.0
        self._reading_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._upgraded = False
        self.tunnel: Tunnel | None = None
        self._switched = False
        self._early: list[bytes] = []

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._switched:
            if self.tunnel is not None:
                self.tunnel.from_upstream(data)
            else:
                self._early.append(data)
            return
        parser = self._parser
        if parser is None:
            # Bytes nobody asked for: the connection is out of sync, never reuse it.
            self.close()
            return
        self._received += len(data)
        self._last_read = self.loop.time()
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # 101: from here on the bytes belong to the new protocol.
            self._parser = None
            self._switched = True
            tail = data[exc.args[0] :]
            if tail:
                self._early.append(tail)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"invalid response from upstream: {exc}", no_response=False))
            self.close()
        if self._listener is not None:
            self._tell()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.tunnel is not None:
            self.tunnel.close()
        if self._parser is not None and not self._message_done:
            head_waiter = self._head_waiter
            if head_waiter is not None and not head_waiter.done():
                reason = "upstream closed the connection before responding"
                head_waiter.set_exception(
                    UpstreamError(reason, no_response=self._received == 0, reused=self.requests > 1)
                )
                self._tell()
            elif self._body is not None:
                if self._close_delimited():
                    self._body.end()
                else:
                    self._body.fail("upstream closed the connection mid-response")
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.tunnel is not None:
            self.tunnel.upstream_write_paused(True)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.tunnel is not None:
            self.tunnel.upstream_write_paused(False)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the proxy handler ---------------------------------------------------------

    def begin(
        self,
        head: bytes,
        head_only: bool,
        body: SpillBuffer,
        has_body: bool = False,
        listener: HeadListener | None = None,
    ) -> asyncio.Future[ResponseHead]:
        """Send a request head and prepare to receive its response.

        The future returned settles with the response head, or the failure. ``listener``
        is called with it once it has, directly: at the end of the read that completed
        the head (the body that came with it is in ``body`` by then), or when the
        connection fails or times out. A done callback would cost a scheduled call.
        """
        assert self.transport is not None
        self.requests += 1
        self._parser = httptools.HttpResponseParser(self)
        waiter = self._head_waiter = self.loop.create_future()
        self._listener = None if listener is None else (listener, waiter)
        self._body = body
        self._headers = []
        self._received = 0
        self._head_only = head_only
        self._message_done = False
        self._interim = False
        self._upgraded = False
        self.request_sent = not has_body
        self._last_read = self._sent_at = self.loop.time()
        self._arm_timer()
        # Sent at the end of this turn of the loop, with the other connections' writes
        # (bext.runtime.outbox): the upstream is not woken while this worker is busy.
        now = self._held.add(self.transport, head)
        if now is not None:
            self.transport.write(now)
        return waiter

    def send_held(self) -> None:
        """Write the held request head (:class:`~bext.runtime.outbox.Outbox`)."""
        self._held.send(self.transport)  # close() and abort() dropped it already

    def write(self, data: bytes) -> None:
        if self._held.data is not None:
            self.send_held()  # the head first
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream closed the connection")
        if self._write_paused:
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self._last_read = self.loop.time()
            self.transport.resume_reading()

    def peer_closed(self) -> bool:
        """Has the upstream already closed this idle connection? (one ``MSG_PEEK``)

        Used before a request that must not be sent twice goes out on a reused
        connection: the upstream's FIN may be in the socket before the event loop has
        reported it.
        """
        if self.closed or self.transport is None:
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        probe = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            return probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            probe.close()

    def start_tunnel(self, tunnel: Tunnel) -> None:
        """Hand the switched connection to ``tunnel``, with what arrived after the 101."""
        self._switched = True
        self._parser = None
        self.tunnel = tunnel
        for data in self._early:
            tunnel.from_upstream(data)
        self._early.clear()

    def close(self) -> None:
        self._held.take()  # a request nobody waits for any more
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self._held.take()
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes | None) -> None:
        self._headers.append((name, value or b""))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if status == 101:
            self._upgraded = True
        elif 100 <= status < 200:
            # Interim responses (100 Continue, 103 Early Hints) are not forwarded. The
            # parser reads one as a message of its own (no body), then the final response
            # as the next one: on_message_complete skips the interim one.
            self._interim = True
            return
        length = None
        for name, value in self._headers:
            if name.lower() == b"content-length" and value.isdigit():
                length = int(value)
        elapsed = self._last_read - self._sent_at  # to the read that completed the head
        head = ResponseHead(status, self._headers, parser.get_http_version(),
                            parser.should_keep_alive(), length, elapsed)  # fmt: skip
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(head)
        if self._head_only or status in (204, 304):
            self._complete()

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._headers = []  # the final response's fields come next
            return
        if not self._message_done:
            self._complete()

    # -- internals -------------------------------------------------------------------------

    def _complete(self) -> None:
        self._message_done = True  # the read timer, if armed, lapses by itself
        # A response that came before the whole request body was sent leaves the
        # connection out of step: it cannot be reused.
        keep_alive = (
            self._parser is not None
            and self._parser.should_keep_alive()
            and not self._upgraded
            and self.request_sent
        )
        if self._body is not None and not self._upgraded:
            self._body.end()
            self._body = None
        self._parser = None
        self._head_waiter = None
        if keep_alive and not self.closed:
            if self._reading_paused:
                # Paused by this response's buffer (full before its reader came): the
                # next response on this connection must be read all the same.
                self.resume_reading()
            self.idle_since = self.loop.time()
            self._on_idle(self)
        elif not self._upgraded:
            self.close()

    def _close_delimited(self) -> bool:
        """The response has neither Content-Length nor chunked framing: EOF ends it."""
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def _tell(self) -> None:
        """Hand a settled head (or failure) to :meth:`begin`'s listener, once."""
        listening = self._listener
        if listening is not None and listening[1].done():
            self._listener = None
            listening[0](listening[1])

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            self._tell()
        elif self._body is not None:
            self._body.fail(error.reason)
        self._parser = None

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_at(self._last_read + self._read_timeout, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._message_done or self.closed or self._parser is None:
            return
        if self._reading_paused:
            self._last_read = self.loop.time()  # the client is slow, not the upstream
        deadline = self._last_read + self._read_timeout
        if deadline <= self.loop.time():
            self._fail(UpstreamTimeout("upstream read timed out", no_response=self._received == 0))
            self.abort()
            return
        self._timer = self.loop.call_at(deadline, self._on_timer)
