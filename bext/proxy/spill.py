"""Request bodies and response read-ahead: memory first, then an anonymous temp file.

Used both ways round: request bodies are spooled completely before the upstream request
starts (a slow upload never occupies a Gunicorn worker), and responses are read from the
upstream at full speed while the client reads at its own pace (the upstream worker is freed
early). Every file lives in the worker's :class:`~bext.proxy.tempspace.TempSpace`: in
``server.temp_path``, counted against ``server.temp_budget``.

When the disk cannot take more (the budget is used up, the response's
``max_temp_file_size`` is reached, or the disk is full) the two differ: a request spool
raises :class:`~bext.proxy.tempspace.TempSpaceFull` (the handler answers ``503``), while
a response's read-ahead keeps what already arrived in memory and pauses the upstream
until the client has caught up (back-pressure: slower for that client, never truncated).

Both are closed by their owner on every path (``close``), which closes the file and gives
its bytes back to the budget; closing twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator

from bext.proxy.tempspace import TempSpace, TempSpaceFull, default_space

READ_SIZE = 256 * 1024


class SpillError(Exception):
    """The producer failed; the data is incomplete."""


class SpillBuffer:
    """A FIFO byte buffer: memory up to ``memory_limit``, then a temp file up to
    ``file_limit`` bytes, after which the producer is asked to pause (``on_pause``).

    Data is kept in order in up to three parts: ``_chunks`` (memory, oldest), the file,
    and ``_tail`` (memory that arrived while the disk refused more, after the file's
    data). The tail only exists while the file holds data; once the reader has drained
    the file, the tail becomes the head and the file is emptied for reuse.
    """

    __slots__ = (
        "_chunks",
        "_done",
        "_error",
        "_fd",
        "_file_limit",
        "_memory",
        "_memory_limit",
        "_on_pause",
        "_on_resume",
        "_paused",
        "_read_pos",
        "_refused",
        "_space",
        "_tail",
        "_waiter",
        "_write_pos",
        "total",
    )

    def __init__(
        self,
        memory_limit: int,
        file_limit: int,
        space: TempSpace | None = None,
        on_pause: Callable[[], None] | None = None,
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._tail: deque[bytes] | None = None  # made when first needed: rarely
        self._memory = 0  # bytes in _chunks and _tail
        self._memory_limit = memory_limit
        self._file_limit = file_limit
        self._space = space or default_space()
        self._fd = -1
        self._read_pos = 0
        self._write_pos = 0  # also the file's size, and what it has taken from the budget
        self._refused = False  # the disk refused data: read ahead in memory only for now
        self._done = False
        self._error: SpillError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._paused = False
        self.total = 0

    def set_limits(self, memory_limit: int, file_limit: int) -> None:
        """Change how far ahead the producer may read (e.g. once a response says "stream")."""
        self._memory_limit = memory_limit
        self._file_limit = file_limit

    @property
    def closed(self) -> bool:
        return self._memory_limit < 0

    @property
    def buffered(self) -> int:
        return self._memory + self._write_pos - self._read_pos

    @property
    def on_disk(self) -> int:
        """The size of the temp file (what it holds of the budget)."""
        return self._write_pos

    @property
    def done(self) -> bool:
        return self._done

    # -- producer -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self._memory_limit < 0:
            return  # closed by the consumer: nobody will read this
        tail = self._tail
        if tail:
            self._keep(tail, data)  # after what waits on disk: order is kept
        elif self._write_pos == self._read_pos and (
            self._memory + len(data) <= self._memory_limit or self._file_limit == 0
        ):
            # The common case (a response that fits in memory), spelled out: it runs for
            # every proxied response.
            self._chunks.append(data)
            self._memory += len(data)
        else:
            # Once anything is on disk, later data goes there too so order is kept.
            self._spill(data)
        if (
            not self._paused
            and self._on_pause is not None
            and (
                self.buffered >= self._memory_limit + self._file_limit
                or (self._refused and self._memory >= self._memory_limit)
            )
        ):
            self._paused = True
            self._on_pause()
        if self._waiter is not None:
            self._wake()

    def end(self) -> None:
        """The producer is done. It is not paused or resumed any more: the connection it
        reads from may go on to another response while this one waits for its reader."""
        self._done = True
        self._on_pause = self._on_resume = None
        if self._waiter is not None:
            self._wake()

    def fail(self, reason: str) -> None:
        if not self._done:
            self._error = SpillError(reason)
            self._done = True
            self._wake()

    def _keep(self, where: deque[bytes], data: bytes) -> None:
        where.append(data)
        self._memory += len(data)

    def _spill(self, data: bytes) -> None:
        """Write ``data`` to the file; what the disk refuses stays in memory, in order."""
        space = self._space
        size = len(data)
        if self._write_pos + size > self._file_limit:
            self._refuse(data)  # max_temp_file_size: no report, it is this response's cap
            return
        if not space.take(size):
            space.over_budget("response read-ahead waits for the client (back-pressure)")
            self._refuse(data)
            return
        view = memoryview(data)
        try:
            if self._fd < 0:
                self._fd = space.open()
            while view:
                written = os.pwrite(self._fd, view, self._write_pos)
                self._write_pos += written
                view = view[written:]
        except OSError as exc:
            space.give(len(view))
            space.disk_failed(exc, "response read-ahead waits for the client (back-pressure)")
            self._refuse(bytes(view))
            return
        self._refused = False

    def _refuse(self, data: bytes) -> None:
        self._refused = True
        if not data:
            return
        if self._write_pos == self._read_pos:
            self._keep(self._chunks, data)  # nothing on disk: memory keeps the order
            return
        if self._tail is None:
            self._tail = deque()
        self._keep(self._tail, data)

    # -- consumer -----------------------------------------------------------------------

    async def read(self) -> bytes:
        """The next piece of data; ``b""`` at the end. Raises :class:`SpillError`."""
        while True:
            data = self.read_nowait()
            if data:
                return data
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def take_complete(self, limit: int) -> bytes | None:
        """All the data at once if it has fully arrived in memory and is at most ``limit``.

        Small upstream responses usually arrive with their head; sending them as one
        buffer saves a write, a task and a generator per request.
        """
        if (
            not self._done
            or self._error is not None
            or self._write_pos
            or self._tail
            or self.total > limit
        ):
            return None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._memory = 0
        return data

    def read_nowait(self) -> bytes:
        if self._chunks:
            data = self._chunks.popleft()
            self._memory -= len(data)
        elif self._read_pos < self._write_pos:
            size = min(READ_SIZE, self._write_pos - self._read_pos)
            data = os.pread(self._fd, size, self._read_pos)
            if not data:  # a file only we write cannot end early: never pass it as the end
                self._error = SpillError("the read-ahead file ended early")
                self._done = True
                return b""
            self._read_pos += len(data)
            if self._read_pos == self._write_pos:
                self._drained()
        else:
            return b""
        if self._paused and self._can_resume():
            self._paused = False
            if self._on_resume is not None:
                self._on_resume()
        return data

    def _drained(self) -> None:
        """The file is read to its end: empty it (its bytes go back to the budget) for
        reuse, and what waited behind it in memory comes first now."""
        self._space.give(self._write_pos)
        self._read_pos = self._write_pos = 0
        with contextlib.suppress(OSError):  # then the space comes back when it is closed
            os.ftruncate(self._fd, 0)
        self._refused = False
        tail = self._tail
        if tail:
            self._chunks, self._tail = tail, self._chunks

    def _can_resume(self) -> bool:
        if self.buffered > (self._memory_limit + self._file_limit) // 2:
            return False
        return not self._refused or self._memory <= self._memory_limit // 2

    def __aiter__(self) -> SpillBuffer:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            self.close()
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._write_pos:
            self._space.give(self._write_pos)
        self._chunks.clear()
        self._tail = None
        self._memory = 0
        self._memory_limit = -1
        self._read_pos = self._write_pos = 0

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class RequestSpool:
    """A complete request body, in memory up to ``memory_limit`` and in a temp file beyond.

    Unlike :class:`SpillBuffer` it can be read any number of times, so a request that must
    go to another server after a failed attempt is sent with the same body.

    It is shared: the handler that filled it and each task sending it upstream hold a
    reference (:meth:`hold`, :meth:`release`), and the file is closed when the last one
    lets go, so a body still being sent is never closed under its sender.
    """

    __slots__ = ("_chunks", "_fd", "_holders", "_memory_limit", "_reserved", "_size", "_space")

    def __init__(self, memory_limit: int, space: TempSpace | None = None) -> None:
        self._chunks: list[bytes] = []
        self._memory_limit = memory_limit
        self._space = space or default_space()
        self._fd = -1
        self._size = 0
        self._reserved = 0  # taken from the budget: what the file holds, or will
        self._holders = 1

    @property
    def size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._holders <= 0

    def reserve(self, length: int) -> None:
        """Take the budget for a body of declared ``length`` before it arrives, so an upload
        that cannot fit is refused at once, not half way. Raises :class:`TempSpaceFull`."""
        if length > self._memory_limit:
            self._take(length)

    def feed(self, data: bytes) -> None:
        """Add the next piece of the body. Raises :class:`TempSpaceFull` when it needs disk
        that the budget or the disk does not have."""
        size = self._size + len(data)
        if self._fd < 0 and size > self._memory_limit:
            self._take(size)
            try:
                self._fd = self._space.open()
                self._write(b"".join(self._chunks))
            except OSError as exc:
                raise self._failed(exc) from None
            self._chunks = []
        if self._fd >= 0:
            self._take(size)
            try:
                self._write(data)
            except OSError as exc:
                raise self._failed(exc) from None
        else:
            self._chunks.append(data)
        self._size = size

    def chunks(self) -> Iterator[bytes]:
        if self._fd < 0:
            if self.closed:
                raise ConnectionAbortedError("the request body was released")
            yield from self._chunks
            return
        offset = 0
        while offset < self._size:
            if self._fd < 0:
                raise ConnectionAbortedError("the request body was released")
            data = os.pread(self._fd, READ_SIZE, offset)
            if not data:
                break
            offset += len(data)
            yield data

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes of the body (what the WAF inspects), without consuming
        anything: the body is sent whole afterwards."""
        if self._fd < 0:
            return b"".join(self._chunks)[:limit]
        return os.pread(self._fd, min(limit, self._size), 0)

    def hold(self) -> bool:
        """One more user; False if the spool was released already (nothing to send)."""
        if self._holders <= 0:
            return False
        self._holders += 1
        return True

    def release(self) -> None:
        """One user less; the last one closes the file and gives its space back."""
        self._holders -= 1
        if self._holders <= 0:
            self.close()

    def close(self) -> None:
        """Close now, whoever still holds it (idempotent)."""
        self._holders = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._space.give(self._reserved)
        self._reserved = 0
        self._chunks = []

    def _take(self, total: int) -> None:
        """Make sure the budget covers ``total`` bytes of file."""
        extra = total - self._reserved
        if extra <= 0:
            return
        space = self._space
        if not space.take(extra):
            space.over_budget("uploads that need disk get 503")
            raise TempSpaceFull("server.temp_budget is used up")
        self._reserved += extra

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _failed(self, exc: OSError) -> TempSpaceFull:
        self._space.disk_failed(exc, "uploads that need disk get 503")
        return TempSpaceFull(f"cannot write the request body to disk: {exc.strerror}")
