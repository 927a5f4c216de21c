"""The ``proxy = "NAME"`` handler: forward a request to an upstream group.

Phases, in order: spool the request body (unless ``request_buffering = false``), pick a
server and a pooled connection, send, await the response head (retrying on the next server
when that is safe), then stream the body back through a spill buffer.

Temp files (:mod:`bext.proxy.spill`, in the worker's :class:`~bext.proxy.tempspace.TempSpace`)
are closed on every path: the spool when the last of the handler and its sender lets go
(finished, refused, failed, or cancelled because the client went away), the response's
read-ahead when the exchange releases the relay, whether or not it was ever read. An upload
that finds no temp space gets ``503`` with ``Retry-After``.

When a retry is safe: a request that never reached an upstream (connect refused or timed
out) goes to the next server whatever its method. An idempotent request also goes again
when the connection closed before a single response byte. A non-idempotent request (POST,
PATCH) that may have reached the app is never sent twice; to make the keep-alive race
(the upstream closing an idle connection just as bext reuses it) unlikely for those, they
only reuse connections that have been idle for less than ``SAFE_REUSE_AGE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from functools import partial
from typing import Protocol

from bext.http.body import EMPTY_BODY, RequestBody
from bext.http.deferred import Deferred
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.http.streams import release
from bext.protocol.events import Headers
from bext.proxy.balancer import RETRY_AFTER as BUSY_RETRY_AFTER
from bext.proxy.balancer import Lease, Overloaded, UpstreamGroup
from bext.proxy.connection import ResponseHead, UpstreamConnection, UpstreamError
from bext.proxy.headers import TrustedProxies, client_response_headers, upstream_request_head
from bext.proxy.pool import IDLE_TIMEOUT, ConnectionPool
from bext.proxy.spill import RequestSpool, SpillBuffer
from bext.proxy.tempspace import RETRY_AFTER, TempSpace, TempSpaceFull, default_space
from bext.proxy.tunnel import Tunnel
from bext.routing.path import upstream_target
from bext.shm.counters import SlotCounters

log = logging.getLogger("bext")

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
SAFE_REUSE_AGE = 2.0
REQUEST_MEMORY = 1024 * 1024
"""Request bodies up to this size are spooled in memory, larger ones to a temp file."""
BUFFERED_MEMORY = 256 * 1024
"""How far ahead of the client bext reads a buffered response in memory; then on disk,
up to the upstream's ``max_temp_file_size``."""
STREAMING_MEMORY = 64 * 1024
SMALL_RESPONSE = 64 * 1024
"""A response this small that arrived whole with its head is sent as one buffer."""
TUNNEL_IDLE_TIMEOUT = 600.0
"""A WebSocket with no traffic either way for this long is closed (at least read_timeout)."""
_LAST_CHUNK = b"0\r\n\r\n"

_MESSAGES = {
    502: "the upstream server is unavailable",
    504: "the upstream server did not answer in time",
}


class BodyTooLarge(Exception):
    """A chunked request body went past the rule's ``max_body_size`` while spooled."""


class Inspection(Protocol):
    """A check of a request and the head of its body that may answer instead (the WAF,
    :class:`bext.waf.phase.WafPhase`): it is handed the first ``limit`` bytes."""

    limit: int

    def check(self, request: Request, body: bytes, size: int | None = None) -> Response | None: ...


_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
"""Methods whose request always says how long its (maybe empty) body is."""
_NO_TEMP_SPACE = "no room for the request body right now; try again later"


class ProxyHandler:
    def __init__(
        self,
        group: UpstreamGroup,
        trusted: TrustedProxies,
        request_buffering: bool = True,
        response_buffering: bool = True,
        extra_headers: Headers | None = None,
        temp: TempSpace | None = None,
        counters: SlotCounters | None = None,
        inspect: Inspection | None = None,
        inspect_bodyless: bool = True,
        max_body_size: int | None = None,
    ) -> None:
        self.group = group
        self.trusted = trusted
        self.request_buffering = request_buffering
        self.response_buffering = response_buffering
        self.extra_headers = extra_headers or []
        self.temp = temp or default_space()
        """Where request spools and response read-ahead go; one per worker."""
        if counters is not None:
            group.counters = counters
        self.inspect = inspect
        """The WAF (``bext.waf.phase.WafPhase``), run on the request and the head of its
        spooled body before anything goes upstream; None: no WAF here."""
        self.max_body_size = max_body_size
        """The rule's ``max_body_size``: a chunked body that grows past it gets 413 (a
        declared length was refused before, by the rule's access rules)."""
        self.inspect_bodyless = inspect_bodyless
        """False when requests without a body were inspected before this handler (the WAF
        in front of the cache, ``inspect_cache_hits``)."""

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        if request.body is EMPTY_BODY:
            inspect = self.inspect
            if inspect is not None and self.inspect_bodyless:
                refused = inspect.check(request, b"")
                if refused is not None:
                    return refused
            # The common request (a GET): the head is built now, and it goes out now on a
            # warm connection (no coroutine), else the exchange is the only one it costs.
            upgrade = _requested_upgrade(request)
            head = upstream_request_head(
                request,
                upstream_target(request.target),
                self.trusted,
                0 if request.method in _BODY_METHODS else None,
                False,
                upgrade,
            )
            pools = self.group.candidates()
            if upgrade is None:
                sent = self._send_now(request, head, pools)
                if sent is not None:
                    return sent
            return self._exchange(request, head, None, False, [(pool, False) for pool in pools])
        return self.proxy(request)

    async def proxy(self, request: Request) -> Response:
        target = upstream_target(request.target)
        spool: RequestSpool | None = None
        content_length: int | None = None
        chunked = False
        body = request.body
        if body is not EMPTY_BODY:
            if self.request_buffering:
                try:
                    spool = await self._spool(request)
                except TempSpaceFull as exc:
                    return self._no_temp_space(request, exc)
                except BodyTooLarge:
                    request.body.discard()
                    return error_response(413, request.header(b"accept"),
                                          "request body too large for this URL")  # fmt: skip
                content_length = spool.size
                if self.inspect is not None:
                    head = spool.head(self.inspect.limit)
                    refused = self.inspect.check(request, head, spool.size)
                    if refused is not None:
                        spool.release()
                        return refused
            else:
                declared = request.header(b"content-length")
                if declared is not None:
                    content_length = int(declared)
                else:
                    chunked = True
        elif request.method in _BODY_METHODS:
            content_length = 0
        try:
            upgrade = _requested_upgrade(request)
            head = upstream_request_head(
                request,
                target,
                self.trusted,
                content_length,
                chunked,
                upgrade,
            )
            return await self._exchange(request, head, spool, chunked)
        finally:
            if spool is not None:
                spool.release()  # the file closes once a sender still using it is done too

    async def _spool(self, request: Request) -> RequestSpool:
        """The whole request body, read before the upstream is involved.

        Whatever stops it (the client goes away or is refused, the exchange is cancelled,
        no temp space) closes the spool before the exception leaves.
        """
        spool = RequestSpool(REQUEST_MEMORY, self.temp)
        try:
            declared = request.header(b"content-length")
            if declared is not None and declared.isdigit():
                spool.reserve(int(declared))
            limit = self.max_body_size
            async for data in request.body:
                spool.feed(data)
                if limit is not None and spool.size > limit:
                    raise BodyTooLarge
        except BaseException:
            spool.close()
            raise
        return spool

    def _no_temp_space(self, request: Request, exc: TempSpaceFull) -> Response:
        """``503`` for an upload that cannot be spooled (the cause is logged by the space)."""
        log.info(
            "upstream %s: %s (%s %s); answering 503",
            self.group.name,
            exc.reason,
            request.method,
            request.target.decode("latin-1"),
        )
        return error_response(
            503, request.header(b"accept"), _NO_TEMP_SPACE, [(b"Retry-After", RETRY_AFTER)]
        )

    def _send_now(
        self, request: Request, head: bytes, pools: list[ConnectionPool]
    ) -> Deferred[Response] | None:
        """The commonest proxied request without a coroutine: a body-less idempotent
        request, a warm connection in the first of ``pools`` (the servers to try, in
        order), no ``max_conns``. The head goes out now, and the response is made when its
        head arrives, in the read that brought it (a :class:`Deferred`, not a future: the
        exchange goes on at once, not one loop turn later); None when the request needs
        the whole of :meth:`_exchange`.

        A failure of this first try is handed to :meth:`_exchange`, with the attempts
        left, exactly as if it had happened there.
        """
        if self.group.limited or request.method not in IDEMPOTENT or not pools:
            return None
        conn = pools[0].take_idle(IDLE_TIMEOUT)
        if conn is None:
            return None
        buffer = self._response_buffer(conn)
        result: Deferred[Response] = Deferred(partial(_abandon, conn, buffer))
        headed = partial(self._headed, request, head, pools, conn, buffer, result)
        conn.begin(head, request.method == "HEAD", buffer, False, headed)
        return result

    def _headed(
        self,
        request: Request,
        head: bytes,
        pools: list[ConnectionPool],
        conn: UpstreamConnection,
        buffer: SpillBuffer,
        result: Deferred[Response],
        waiter: asyncio.Future[ResponseHead],
    ) -> None:
        """:meth:`_send_now`'s response head (or failure) arrived. The connection calls
        this at the end of the read that completed the head (the body that came with it
        is buffered by then), or when it failed."""
        if result.done():
            return  # cancelled: the client went away, and _abandon let go of the upstream
        try:
            error = waiter.exception()
            if error is None:
                # The exchange goes on from here, in this call (it sends the response);
                # what it raises, the deferred reports, as a done callback's would be.
                # Refused (the awaiting task was just cancelled), the answer needs no
                # release: the cancel ran _abandon, which let go of its buffer and conn.
                result.set_result(self._answer(request, pools[0], conn, buffer, waiter.result()))
                return
            buffer.close()
            conn.abort()
            if not isinstance(error, UpstreamError):
                result.set_exception(error)
                return
            attempts = [(pool, False) for pool in pools[1:]]
            if not self._retry(request, error, pools[0], False, attempts, True) or not attempts:
                result.set_result(self._failed(request, error))
                return
            retry = asyncio.ensure_future(self._exchange(request, head, None, False, attempts))
            retry.add_done_callback(partial(_settle, result))
            result.on_cancel = retry.cancel
        except BaseException as exc:  # never leave the exchange waiting for ever
            buffer.close()
            conn.abort()
            if not result.done():
                result.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def _exchange(
        self,
        request: Request,
        head: bytes,
        spool: RequestSpool | None,
        chunked: bool,
        attempts: list[tuple[ConnectionPool, bool]] | None = None,
    ) -> Response:
        """Send ``request`` to the group's servers in turn until one answers, or it is not
        safe to try again. ``attempts``: (pool, on a fresh connection) left to try; all
        the group's candidates by default."""
        method = request.method
        idempotent = method in IDEMPOTENT
        replayable = request.body is EMPTY_BODY or spool is not None
        error: UpstreamError | None = None
        group = self.group
        if attempts is None:
            attempts = [(pool, False) for pool in group.candidates()]
        while attempts:
            # With max_conns, a place on the server first (maybe after a wait in the
            # queue). The lease ends when the server is done with the request (the
            # connection's on_finished) or here on a path that does not get that far.
            lease: Lease | None = None
            if group.limited:
                try:
                    index, lease = await group.admit([pool for pool, _ in attempts])
                except Overloaded as exc:
                    return _busy(request, exc)
                pool, fresh = attempts.pop(index)
            else:
                pool, fresh = attempts.pop(0)
            try:
                max_age = IDLE_TIMEOUT if idempotent else SAFE_REUSE_AGE
                conn = (None if fresh else pool.take_idle(max_age)) or await pool.acquire(
                    max_age, fresh
                )
                if conn.requests and not idempotent and conn.peer_closed():
                    # A request that must not be sent twice never goes out on a pooled
                    # connection the upstream has already closed.
                    conn.close()
                    conn = await pool.acquire(fresh=True)
            except UpstreamError as exc:
                if lease is not None:
                    lease.release()
                self._log(request, exc, pool.label,
                          "trying the next server" if attempts else "giving up")  # fmt: skip
                group.mark_failed(pool)
                error = exc
                continue
            except BaseException:
                if lease is not None:
                    lease.release()
                raise
            if lease is not None:
                conn.on_finished = lease.release
            buffer = self._response_buffer(conn)
            waiter = conn.begin(head, method == "HEAD", buffer, request.body is not EMPTY_BODY)
            sender = None
            if request.body is not EMPTY_BODY:
                sender = asyncio.ensure_future(_send_body(conn, spool or request.body, chunked))
            try:
                response_head = await waiter
            except BaseException as exc:
                # Failed, or cancelled (the client went away): the upstream must not go on
                # filling a buffer nobody will read.
                if sender is not None:
                    sender.cancel()
                buffer.close()
                conn.abort()
                if lease is not None:
                    lease.release()  # now, not when the abort is reported: a retry needs it
                if not isinstance(exc, UpstreamError):
                    raise
                error = exc
                if self._retry(request, exc, pool, fresh, attempts, idempotent and replayable):
                    continue
                break
            return self._answer(request, pool, conn, buffer, response_head, lease, sender)
        if error is None:  # nothing was tried, so nothing was logged yet
            error = UpstreamError("no healthy server (all failed their health checks)")
            self._log(request, error, None, "giving up")
        return self._failed(request, error)

    def _response_buffer(self, conn: UpstreamConnection) -> SpillBuffer:
        """Where the response body waits for the client (on disk past the memory limit,
        when buffering)."""
        buffering = self.response_buffering
        return SpillBuffer(
            BUFFERED_MEMORY if buffering else STREAMING_MEMORY,
            self.group.config.max_temp_file_size if buffering else 0,
            self.temp,
            on_pause=conn.pause_reading,
            on_resume=conn.resume_reading,
        )

    def _retry(
        self,
        request: Request,
        error: UpstreamError,
        pool: ConnectionPool,
        fresh: bool,
        attempts: list[tuple[ConnectionPool, bool]],
        replayable: bool,
    ) -> bool:
        """After ``error`` on ``pool``: True to go on with ``attempts`` (maybe with a new
        connection to the same server first), False to give up. Logged and counted."""
        if error.no_response and replayable:
            if error.reused and not fresh:
                # A keep-alive connection the server had just closed: same server, new
                # connection.
                attempts.insert(0, (pool, True))
                outcome = "trying again on a new connection"
            else:
                outcome = "trying the next server" if attempts else "giving up"
            self._log(request, error, pool.label, outcome)
            self.group.counters.metrics.retry(self.group.index)
            return True
        self._log(request, error, pool.label, "giving up (not safe to send again)")
        return False

    def _answer(
        self,
        request: Request,
        pool: ConnectionPool,
        conn: UpstreamConnection,
        buffer: SpillBuffer,
        response_head: ResponseHead,
        lease: Lease | None = None,
        sender: asyncio.Future[None] | None = None,
    ) -> Response:
        """The client's response, from the upstream's response head (its body follows
        in ``buffer``, or is there already)."""
        group = self.group
        group.mark_ok(pool)
        elapsed = response_head.elapsed
        group.counters.metrics.upstream_time(group.index, elapsed)
        notes = request.notes
        notes.upstream, notes.server, notes.upstream_time = group.name, pool.label, elapsed
        headers, no_buffering = client_response_headers(response_head.headers)
        if notes.request_id is not None:
            headers.append((b"X-Request-ID", notes.request_id.encode("ascii")))
        if no_buffering and self.response_buffering:
            buffer.set_limits(STREAMING_MEMORY, 0)
        if self.extra_headers:
            headers = _with_rule_headers(headers, self.extra_headers)
        status = response_head.status
        if status == 101:
            if lease is not None:
                # A WebSocket does not count against max_conns once switched: the app
                # servers that take them are asynchronous, and a long-lived tunnel
                # would hold a place that requests are queueing for.
                lease.release()
            return self._switch_protocols(request, conn, response_head.headers, headers)
        if status in (204, 304) or 100 <= status < 200:
            buffer.close()
            return Response(status, headers)
        complete = buffer.take_complete(SMALL_RESPONSE) if request.method != "HEAD" else None
        if complete is not None:
            buffer.close()
            return Response(status, headers, complete)
        return Response(
            status,
            headers,
            stream=_Relay(buffer, conn, sender),
            content_length=response_head.content_length,
        )

    def _failed(self, request: Request, error: UpstreamError) -> Response:
        """The error page for a request no server answered (502 or 504)."""
        rid = request.notes.request_id
        extra = [(b"X-Request-ID", rid.encode("ascii"))] if rid is not None else None
        return error_response(
            error.status, request.header(b"accept"), _MESSAGES[error.status], extra
        )

    def _switch_protocols(
        self,
        request: Request,
        conn: UpstreamConnection,
        raw_headers: Headers,
        headers: Headers,
    ) -> Response:
        upgrade = _requested_upgrade(request)
        granted = next((v for n, v in raw_headers if n.lower() == b"upgrade"), None)
        if upgrade is None or granted is None:
            conn.abort()
            log.warning(
                "upstream %s: switched protocols unasked (%s %s)",
                self.group.name,
                request.method,
                request.target.decode("latin-1"),
            )
            return error_response(502, request.header(b"accept"), _MESSAGES[502])
        tunnel = Tunnel(conn, max(TUNNEL_IDLE_TIMEOUT, self.group.config.read_timeout_ms / 1000))
        conn.start_tunnel(tunnel)
        headers = [*headers, (b"Connection", b"Upgrade"), (b"Upgrade", granted)]
        return Response(101, headers, tunnel=tunnel)

    def _log(
        self, request: Request, error: UpstreamError, server: str | None, outcome: str
    ) -> None:
        """Every upstream failure, once: a log line saying which server, why and what next,
        and a shared counter (by kind in the metrics)."""
        counters = self.group.counters
        counters.upstream_error()
        counters.metrics.upstream_error(self.group.index, _error_kind(error))
        log.warning(
            "upstream %s: %s (%s %s%s); %s",
            self.group.name,
            error.reason,
            request.method,
            request.target.decode("latin-1"),
            f" on {server}" if server else "",
            outcome,
        )


def _error_kind(error: UpstreamError) -> str:
    """The metrics' kind of an upstream failure (``bext.shm.metrics.ERROR_KINDS``)."""
    if error.connect_failed:
        return "connect"
    if error.status == 504:
        return "timeout"
    if error.reason.startswith("invalid response"):
        return "invalid"
    return "reset"


async def _send_body(
    conn: UpstreamConnection, source: RequestSpool | RequestBody, chunked: bool
) -> None:
    """Write the request body upstream, respecting the upstream's flow control."""
    held = isinstance(source, RequestSpool) and source.hold()
    try:
        if isinstance(source, RequestSpool):
            for data in source.chunks():
                conn.write(data)
                await conn.drain()
        else:
            async for data in source:
                conn.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                await conn.drain()
            if chunked:
                conn.write(_LAST_CHUNK)
        conn.request_sent = True
    except ConnectionError:
        pass
    except Exception:
        conn.abort()  # the client's body broke off: the upstream must not see a short one
        raise
    finally:
        if held and isinstance(source, RequestSpool):
            source.release()


class _Relay:
    """The response body for the client; if the client goes away, so does the upstream.

    A class, not an async generator, for the same reason as
    :class:`~bext.compress.stream.CompressedStream`: ``aclose()`` on a generator that never
    started does nothing, and a response the client never read a byte of (an HTTP/2 stream
    whose window stays shut, a client gone before the first chunk) would keep its
    read-ahead file open and its upstream connection reading.
    """

    __slots__ = ("_buffer", "_closed", "_conn", "_sender")

    def __init__(
        self, buffer: SpillBuffer, conn: UpstreamConnection, sender: asyncio.Future[None] | None
    ) -> None:
        self._buffer = buffer
        self._conn = conn
        self._sender = sender
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            data = await self._buffer.read()
        except BaseException:
            self.close()
            raise
        if not data:
            self.close()
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        buffer = self._buffer
        if not buffer.done:
            self._conn.abort()
        buffer.close()
        sender = self._sender
        if sender is not None and not sender.done():
            sender.cancel()


def _abandon(conn: UpstreamConnection, buffer: SpillBuffer) -> None:
    """A :meth:`ProxyHandler._send_now` answer nobody waits for any more (the client went
    away): the upstream must not go on filling a buffer nobody will read."""
    buffer.close()
    conn.abort()


def _settle(result: Deferred[Response], retry: asyncio.Future[Response]) -> None:
    """Pass the retry's outcome on to the answer the exchange waits for; a response
    nobody takes any more (the client went away meanwhile) is released here."""
    if retry.cancelled():
        result.cancel()
        return
    error = retry.exception()
    if error is not None:
        if not result.done():
            result.set_exception(error)
        return
    response = retry.result()
    if result.done() or not result.set_result(response):
        asyncio.get_running_loop().create_task(release(response))  # a relay holds a conn


def _busy(request: Request, exc: Overloaded) -> Response:
    """``503`` for a request that found every server at ``max_conns`` and could not wait."""
    return error_response(
        503,
        request.header(b"accept"),
        "the upstream servers are busy; try again later",
        [(b"Retry-After", BUSY_RETRY_AFTER)],
    )


def _requested_upgrade(request: Request) -> bytes | None:
    """The protocol a client asks to switch to (``Upgrade`` named in ``Connection``)."""
    upgrade = request.header(b"upgrade")
    if upgrade is None:
        return None
    for name, value in request.headers:
        if name == b"connection" and b"upgrade" in value.lower():
            return upgrade
    return None


def _with_rule_headers(headers: Headers, extra: Headers) -> Headers:
    """The rule's ``headers`` win over the upstream's fields of the same name."""
    names = {name.lower() for name, _ in extra}
    return [(n, v) for n, v in headers if n.lower() not in names] + extra
