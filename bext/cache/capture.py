"""Storing a streamed response while the client receives it.

A response too large to arrive with its head is relayed to the client as it comes; the
capture copies each piece into an anonymous temporary file in the store's directory and,
when the body ended normally and within ``max_object_size``, hands the file to a callback
that stores it. A body that grows past the limit stops being copied (it is still relayed
whole); a body that breaks off, or a client that goes away, stores nothing. Either way the
file is closed once, by whichever path ends the stream, and memory stays at one piece.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from bext.http.streams import aclose_stream

log = logging.getLogger("bext")

__all__ = ["CapturedBody"]


class CapturedBody:
    """The body stream for the client, copied aside (a class, so that ``aclose`` works on
    a stream that never started, as :class:`bext.proxy.handler._Relay` explains)."""

    __slots__ = ("_done", "_file", "_inner", "_limit", "_on_abandon", "_on_complete", "_size")

    def __init__(
        self,
        inner: AsyncIterator[bytes],
        directory: Path,
        limit: int,
        on_complete: Callable[[BinaryIO], None],
        on_abandon: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._limit = limit
        self._size = 0
        self._on_complete = on_complete
        self._on_abandon = on_abandon
        self._done = False
        self._file: BinaryIO | None
        try:
            self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed in _finish)
        except OSError as exc:
            log.warning("cache: no temporary file in %s (%s); not storing", directory, exc)
            self._file = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._inner.__anext__()
        except StopAsyncIteration:
            self._finish(complete=True)
            raise
        except BaseException:
            self._finish(complete=False)
            raise
        file = self._file
        if file is not None:
            self._size += len(data)
            try:
                if self._size > self._limit:
                    raise OSError("larger than cache.max_object_size")
                file.write(data)
            except OSError:
                self._finish(complete=False)
        return data

    async def aclose(self) -> None:
        self._finish(complete=False)
        await aclose_stream(self._inner)

    def _finish(self, complete: bool) -> None:
        """Store (``complete``) or drop the copy; runs its callback once, whatever ends
        the stream first."""
        if self._done:
            return
        self._done = True
        file, self._file = self._file, None
        try:
            if complete and file is not None:
                file.seek(0)
                self._on_complete(file)
            else:
                self._on_abandon()
        except Exception:
            log.exception("cache: storing a streamed response failed")
        finally:
            if file is not None:
                file.close()
