"""One request/response exchange, whatever HTTP version carries it.

A connection module turns bytes into a :class:`~bext.http.message.Request` and calls
:func:`start` with a :class:`Sender`, its own small interface for putting a response on
the wire. From there the exchange is the same for HTTP/1.1, HTTP/2 and HTTP/3:

1. run the pipeline (:mod:`bext.worker.pipeline`: request phases, route, handler,
   response phases); a handler that fails is a ``500``, a request body that breaks off
   while the handler reads it is a ``400``;
2. apply what every version shares: HEAD, ``204`` and ``304`` carry no body; a final
   status is at least ``200`` (a ``101`` needs a tunnel and a version that can switch,
   else ``502``); a streamed body must be exactly as long as its head said;
3. send: a body in memory in one call (:meth:`Sender.send_whole`), anything else as a
   head, chunks with back-pressure, and an end (trailers where the version has them);
   a body that breaks off half way is made to look broken (:meth:`Sender.break_off`:
   reset or abort), never complete;
4. release whatever the response holds (stream, file, tunnel) on every exit path;
5. log: the logging phase (:meth:`~bext.worker.context.WorkerContext.record`) runs once
   per exchange: the sender calls it when the last byte is handed over (which, under
   HTTP/2 flow control, can be long after the exchange gave it the body), the exchange
   calls it for a body that broke off.

The fast path costs nothing extra: a pipeline that answers at once with a small body is
sent from :func:`start` without a task or an :class:`Exchange` object. Anything else gets
an :class:`Exchange`, which a connection cancels when its stream or connection goes away.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from bext.http.body import EMPTY_BODY, BodyError
from bext.http.deferred import Deferred
from bext.http.errors import error_response
from bext.http.filebody import FileBody
from bext.http.message import PendingResponse, Request, Response
from bext.http.streams import aclose_stream, release
from bext.worker.context import WorkerContext

log = logging.getLogger("bext")

NO_BODY_STATUS = frozenset({204, 304})

SLICE = 64 * 1024
"""Piece size when an in-memory body is larger than a sender takes in one call."""


def with_body(request: Request, status: int) -> bool:
    """Whether a response to ``request`` with ``status`` carries its body."""
    return request.method != "HEAD" and status not in NO_BODY_STATUS


class Sender(Protocol):
    """What one HTTP version offers an exchange: a stream (h2, h3) or the connection (h1).

    Every method but :meth:`send_data` is synchronous. The sender calls the logging phase
    (``ctx.record``) itself when a response it was given completes, because only it knows
    when that is.
    """

    @property
    def whole_limit(self) -> int:
        """The largest in-memory body :meth:`send_whole` takes; larger ones are streamed."""

    @property
    def sends_files(self) -> bool:
        """True where :meth:`send_file` does better than reading the file in chunks."""

    @property
    def gone(self) -> bool:
        """The stream or the connection went away, or was answered otherwise."""

    def send_whole(self, request: Request, response: Response, with_body: bool) -> None:
        """Send head, in-memory body and trailers; finish (and record) when sent."""

    def send_head(
        self, request: Request, response: Response, length: int | None, with_body: bool
    ) -> None:
        """Send a streamed response's head; without a body the response is complete."""

    async def ready(self) -> None:
        """Return once the next body chunk may be produced (the peer takes more).

        Called before every chunk is pulled from its source, so a client that reads
        nothing never makes bext produce (or buffer) more than one chunk. Raises
        :class:`ConnectionError` if the stream or connection is gone.
        """

    def send_data(self, data: bytes) -> None:
        """Send one body chunk (the flow control check was :meth:`ready`)."""

    def send_end(self, request: Request, response: Response, sent: int) -> None:
        """The streamed body is complete: end it (with trailers where possible)."""

    async def send_file(self, request: Request, response: Response, file: FileBody) -> None:
        """Send a file response, head included (only called where ``sends_files``)."""

    def break_off(self) -> None:
        """The body cannot be completed: reset the stream or abort the connection."""

    def refuse_reuse(self) -> None:
        """The connection must not carry another request after this one."""

    def switch_protocols(self, request: Request, response: Response) -> bool:
        """Send the ``101`` and hand the connection to ``response.tunnel``.

        Returns False where this version or this request cannot switch.
        """


class StreamSender:
    """What a stream of a multiplexed connection (HTTP/2, HTTP/3) has in common as a
    :class:`Sender`: no ``sendfile`` (bytes go through framing), no connection to keep
    or close per request, and no ``101`` (RFC 9113 §8.6, RFC 9114 §4.5)."""

    __slots__ = ()

    sends_files = False

    async def send_file(self, request: Request, response: Response, file: FileBody) -> None:
        raise NotImplementedError  # sends_files is False: files arrive as chunks

    def refuse_reuse(self) -> None:
        pass

    def switch_protocols(self, request: Request, response: Response) -> bool:
        return False


def start(
    ctx: WorkerContext, request: Request, sender: Sender, quick: bool = True
) -> Exchange | None:
    """Run the pipeline for ``request`` and answer through ``sender``.

    Returns None when the answer was sent (or handed to the sender) already; otherwise the
    :class:`Exchange` that finishes it, which the connection keeps so that it can
    :meth:`~Exchange.cancel` it.

    A body-less request is offered to the pipeline's quick lane first (``ctx.quick``,
    :meth:`~bext.worker.pipeline.Pipeline.quick`): its answer is whole and final, so it
    goes to :meth:`Sender.send_whole` as the full path's would. ``quick=False``: the
    caller offered it already (HTTP/1.1 does, before it makes a Request).
    """
    lane = ctx.quick
    if quick and lane is not None and request.body is EMPTY_BODY:
        answer = lane(request.method, request.host, request.target, ctx.scheme, request.headers)
        if answer is not None:
            response, route = answer
            route.claim(request)
            sender.send_whole(request, response, with_body(request, response.status))
            return None
    try:
        result = ctx.handler.handle(request)
    except Exception:
        log.exception("request handler failed for %s %r", request.method, request.target)
        result = error_response(500, request.header(b"accept"))
    if (
        type(result) is Response
        and result.stream is None
        and result.file is None
        and result.tunnel is None
        and result.status >= 200
        and len(result.body) <= sender.whole_limit
    ):
        sender.send_whole(
            request, result, request.method != "HEAD" and result.status not in NO_BODY_STATUS
        )
        return None
    exchange = Exchange(ctx, request, sender, result)
    pending = result.pending if type(result) is PendingResponse else result
    if isinstance(pending, Deferred):
        # An answer that a callback will complete (the proxy's warm-connection path):
        # no task unless its body must be streamed, and no loop turn before it is sent.
        pending.then(exchange.resolved)
    else:
        exchange.task = asyncio.get_running_loop().create_task(exchange.run())
    return exchange


class Exchange:
    """An exchange whose answer needs waiting: the handler, or a body sent in pieces."""

    __slots__ = ("_result", "ctx", "request", "sender", "task")

    def __init__(
        self,
        ctx: WorkerContext,
        request: Request,
        sender: Sender,
        result: Response | Awaitable[Response],
    ) -> None:
        self.ctx = ctx
        self.request = request
        self.sender = sender
        self._result: Response | Awaitable[Response] | None = result
        self.task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Stop the exchange (stream reset, connection gone) and free what it holds."""
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        result = self._result
        if result is not None:
            # Never awaited (the task did not start, or the callback did not come), so
            # nothing else will release this: do it here.
            self._result = None
            _discard(result)

    async def run(self) -> None:
        result = self._result
        self._result = None
        if result is None:
            return  # cancelled before it started
        if isinstance(result, Response):
            response: Response | None = result
        else:
            try:
                if type(result) is PendingResponse:
                    response = result.finish(await result.pending)
                else:
                    response = await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                response = self._failed(exc)
        if response is not None and not self._sent_whole(response):
            await self._send_and_release(response)

    def resolved(self, answer: Deferred[Response]) -> None:
        """The consumer of a handler's :class:`Deferred` (see :func:`start`)."""
        result = self._result
        self._result = None
        if result is None or answer.cancelled():
            return  # cancelled: released by cancel()
        error = answer.exception()
        if error is not None:
            response = self._failed(error)
        else:
            response = answer.result()
            if type(result) is PendingResponse:
                try:
                    response = result.finish(response)
                except Exception as exc:
                    asyncio.get_running_loop().create_task(release(response))
                    response = self._failed(exc)
        if response is not None and not self._sent_whole(response):
            # Streamed by a task. The response stays on the exchange until the task
            # starts, so that a cancel() before then releases it: a task cancelled
            # before its first step never runs its coroutine, nor its finally.
            self._result = response
            self.task = asyncio.get_running_loop().create_task(self.run())

    def _failed(self, exc: BaseException) -> Response | None:
        """The answer to send after the handler raised ``exc`` (None: nobody to tell)."""
        request = self.request
        sender = self.sender
        if isinstance(exc, BodyError):
            if sender.gone:
                return None
            sender.refuse_reuse()
            return error_response(400, request.header(b"accept"), str(exc))
        log.error("request handler failed for %s %r", request.method, request.target,
                  exc_info=exc)  # fmt: skip
        return error_response(500, request.header(b"accept"))

    def _sent_whole(self, response: Response) -> bool:
        """Send ``response`` at once if it is whole (True); False when it must be
        streamed, by :meth:`_send_and_release` (which releases it whatever happens)."""
        status = response.status
        sender = self.sender
        if (
            response.stream is None
            and response.file is None
            and response.tunnel is None
            and status >= 200
            and len(response.body) <= sender.whole_limit
        ):
            # The common answer (a proxied page, an error): nothing to stream or release.
            if not sender.gone:
                sender.send_whole(self.request, response, with_body(self.request, status))
            return True
        return False

    async def _send_and_release(self, response: Response) -> None:
        done_with = False
        try:
            if not self.sender.gone:
                done_with = await self._send(response)
        finally:
            if not done_with:
                await release(response)

    async def _send(self, response: Response) -> bool:
        """Send ``response``; True when nothing of it is left for the caller to release
        (the connection switched protocols and owns the tunnel, or it was released here).

        Otherwise the caller releases ``response`` afterwards, whatever happened.
        """
        request = self.request
        sender = self.sender
        if response.tunnel is not None and sender.switch_protocols(request, response):
            return True
        if response.tunnel is not None or response.status < 200:
            # HTTP/2 and HTTP/3 have no 101 (RFC 9113 §8.6, RFC 9114 §4.5); on HTTP/1.1
            # the client did not ask to switch; a final 1xx does not exist anywhere.
            await release(response)
            log.error("handler answered %s %r with %d, which cannot be sent here; sending 502",
                      request.method, request.target, response.status)  # fmt: skip
            await self._send(error_response(502, request.header(b"accept")))
            return True
        body = with_body(request, response.status)
        file = response.file
        source: AsyncIterator[bytes]
        length: int | None
        if file is not None:
            if sender.sends_files and body and file.count:
                await sender.send_file(request, response, file)
                return False
            source, length = file.chunks(), file.count
        elif response.stream is not None:
            source, length = response.stream, response.content_length
        elif not body or len(response.body) <= sender.whole_limit:
            sender.send_whole(request, response, body)
            return False
        else:
            source, length = _slices(response.body), len(response.body)
        try:
            await self._stream(response, source, length, body)
        finally:
            if source is not response.stream:  # the response's own is released by run()
                await aclose_stream(source)
        return False

    async def _stream(
        self, response: Response, source: AsyncIterator[bytes], length: int | None, body: bool
    ) -> None:
        request = self.request
        sender = self.sender
        sender.send_head(request, response, length, body)
        if not body:
            return
        sent = 0
        pull = source.__anext__
        try:
            while True:
                await sender.ready()
                try:
                    data = await pull()
                except StopAsyncIteration:
                    break
                if data:
                    sent += len(data)
                    sender.send_data(data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if sender.gone:
                return  # the client went away: nothing left to tell it
            # The body broke off half way: the client must see a broken response, never
            # a complete-looking one.
            if isinstance(exc, OSError):
                log.warning("response body for %s %r broke off: %s", request.method,
                            request.target, exc)  # fmt: skip
            else:
                log.exception("response stream failed for %s %r", request.method,
                              request.target)  # fmt: skip
            self._broken(response, sent)
            return
        if length is not None and sent != length:
            log.error("response stream for %r sent %d of %d bytes", request.target, sent, length)
            self._broken(response, sent)
            return
        sender.send_end(request, response, sent)

    def _broken(self, response: Response, sent: int) -> None:
        self.sender.break_off()
        self.ctx.record(self.request, response.status, sent, asyncio.get_running_loop().time())


async def _slices(body: bytes) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for offset in range(0, len(body), SLICE):
        yield bytes(view[offset : offset + SLICE])


def _discard(result: Response | Awaitable[Response]) -> None:
    """Drop a handler result nobody will await or send."""
    if isinstance(result, Response):
        asyncio.get_running_loop().create_task(release(result))
    elif type(result) is PendingResponse:
        _discard(result.pending)
    elif inspect.iscoroutine(result):
        result.close()
    elif isinstance(result, (Deferred, asyncio.Future)):
        result.cancel()
