"""A FIFO byte buffer that spills from memory to an anonymous temp file.

Used both ways round: request bodies are spooled completely before the upstream request
starts (a slow upload never occupies a Gunicorn worker), and responses are read from the
upstream at full speed while the client reads at its own pace (the upstream worker is freed
early). Memory per buffer stays below ``memory_limit``; beyond it data goes to a file, up to
``file_limit``, after which the producer is asked to pause.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator

READ_SIZE = 256 * 1024


class SpillError(Exception):
    """The producer failed; the data is incomplete."""


class SpillBuffer:
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
        "_tmpdir",
        "_waiter",
        "_write_pos",
        "total",
    )

    def __init__(
        self,
        memory_limit: int,
        file_limit: int,
        tmpdir: str | None = None,
        on_pause: Callable[[], None] | None = None,
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._memory = 0
        self._memory_limit = memory_limit
        self._file_limit = file_limit
        self._tmpdir = tmpdir
        self._fd = -1
        self._read_pos = 0
        self._write_pos = 0
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
    def done(self) -> bool:
        return self._done

    # -- producer -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self._memory_limit < 0:
            return  # closed by the consumer: nobody will read this
        nothing_on_disk = self._write_pos == self._read_pos
        if nothing_on_disk and (
            self._memory + len(data) <= self._memory_limit or self._file_limit == 0
        ):
            self._chunks.append(data)
            self._memory += len(data)
        else:
            # Once anything is on disk, later data goes there too so order is kept.
            if self._fd < 0:
                self._fd, path = tempfile.mkstemp(prefix="bext-", dir=self._tmpdir)
                os.unlink(path)
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, self._write_pos)
                self._write_pos += written
                view = view[written:]
        if (
            not self._paused
            and self._on_pause is not None
            and self.buffered >= self._memory_limit + self._file_limit
        ):
            self._paused = True
            self._on_pause()
        self._wake()

    def end(self) -> None:
        self._done = True
        self._wake()

    def fail(self, reason: str) -> None:
        if not self._done:
            self._error = SpillError(reason)
            self._done = True
            self._wake()

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
        if not self._done or self._error is not None or self._fd >= 0 or self.total > limit:
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
            self._read_pos += len(data)
            if self._read_pos == self._write_pos:
                self._read_pos = self._write_pos = 0  # drained: reuse the file from the start
        else:
            return b""
        if self._paused and self.buffered <= (self._memory_limit + self._file_limit) // 2:
            self._paused = False
            if self._on_resume is not None:
                self._on_resume()
        return data

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
        self._chunks.clear()
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
    """

    __slots__ = ("_chunks", "_fd", "_memory_limit", "_size", "_tmpdir")

    def __init__(self, memory_limit: int, tmpdir: str | None = None) -> None:
        self._chunks: list[bytes] = []
        self._memory_limit = memory_limit
        self._tmpdir = tmpdir
        self._fd = -1
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        if self._fd < 0 and self._size + len(data) > self._memory_limit:
            self._fd, path = tempfile.mkstemp(prefix="bext-body-", dir=self._tmpdir)
            os.unlink(path)
            for chunk in self._chunks:
                os.write(self._fd, chunk)
            self._chunks = []
        if self._fd >= 0:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        else:
            self._chunks.append(data)
        self._size += len(data)

    def chunks(self) -> Iterator[bytes]:
        if self._fd < 0:
            yield from self._chunks
            return
        offset = 0
        while offset < self._size:
            data = os.pread(self._fd, READ_SIZE, offset)
            if not data:
                break
            offset += len(data)
            yield data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._chunks = []
