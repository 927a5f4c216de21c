"""The request body as a stream the handler pulls from, with flow control to the socket.

The connection pushes chunks in as the parser produces them; the handler awaits
:meth:`RequestBody.read`. When more than ``high_water`` bytes wait unread, the connection is
asked to stop reading the socket, so a fast uploader cannot make bext buffer without bound
while a handler (or an upstream) is slow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from bext.protocol.events import Headers


class BodyFlow(Protocol):
    """What a body needs from the connection that carries it."""

    def pause_body(self) -> None: ...

    def resume_body(self) -> None: ...

    def send_continue(self) -> None: ...


class BodyError(Exception):
    """The body could not be received completely (client went away, timed out, too large)."""


class RequestBody:
    __slots__ = (
        "_buffered",
        "_chunks",
        "_continue_pending",
        "_discarding",
        "_done",
        "_error",
        "_flow",
        "_high_water",
        "_paused",
        "_waiter",
        "received",
        "trailers",
    )

    def __init__(
        self,
        flow: BodyFlow | None,
        expect_continue: bool = False,
        high_water: int = 256 * 1024,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = flow is None
        self._error: BodyError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._flow = flow
        self._high_water = high_water
        self._paused = False
        self._continue_pending = expect_continue
        self._discarding = False
        self.received = 0
        self.trailers: Headers | None = None
        """Fields that followed the body (HTTP/2 trailers), set when it ends."""

    # -- producer side (the connection) --------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self._discarding:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._high_water and not self._paused and self._flow is not None:
            self._paused = True
            self._flow.pause_body()
        self._wake()

    def end(self, trailers: Headers | None = None) -> None:
        self.trailers = trailers
        self._done = True
        self._continue_pending = False
        self._wake()

    def fail(self, reason: str) -> None:
        if not self._done:
            self._error = BodyError(reason)
            self._done = True
            self._wake()

    def discard(self) -> None:
        """Drop what is buffered and whatever still arrives (the handler is done)."""
        self._discarding = True
        self._chunks.clear()
        self._buffered = 0
        self._resume()

    @property
    def complete(self) -> bool:
        """True once the whole body has arrived (or there was none)."""
        return self._done and self._error is None

    @property
    def continue_pending(self) -> bool:
        """The client waits for ``100 Continue`` that was never sent."""
        return self._continue_pending

    # -- consumer side (handlers) ----------------------------------------------------------

    async def read(self) -> bytes:
        """The next chunk; ``b""`` at the end. Raises :class:`BodyError`."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            if self._continue_pending and self._flow is not None:
                self._continue_pending = False
                self._flow.send_continue()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered <= self._high_water // 4:
            self._resume()
        return data

    async def read_all(self, limit: int) -> bytes:
        """The whole body, refusing more than ``limit`` bytes."""
        parts = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                raise BodyError("request body larger than the limit")
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        if self._paused and self._flow is not None:
            self._paused = False
            self._flow.resume_body()


EMPTY_BODY = RequestBody(None)
"""The body of every request that has none; stateless, so one instance serves all."""
