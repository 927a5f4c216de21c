"""Compressing a streamed body (proxied responses, files) as it is sent.

Written as a class rather than an async generator for one reason: closing. The connection
closes a response stream it will not (or no longer) read with ``aclose()``; an async
generator that has not started ignores that, and the stream it wraps (an upstream relay, a
file descriptor) would be left for the garbage collector. Here ``aclose()`` always reaches
the wrapped stream and the ``on_close`` hook, started or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from bext.compress.codecs import Encoder
from bext.http.streams import aclose_stream

YIELD_EVERY = 256 * 1024
"""Input bytes compressed between two turns given to the event loop (a few ms of CPU)."""


class CompressedStream:
    """``source`` compressed chunk by chunk.

    Every source chunk is flushed through the encoder before the next one is awaited, so
    whatever the upstream has sent reaches the client decodable at once (streaming views,
    long polls): compression never holds data back waiting for more. Files gain from it
    too: unflushed, brotli emits nothing until the very end of a multi-megabyte file (the
    client waits, the worker holds it all), while a flush per 256 KiB read costs no ratio
    measurably (it was even slightly smaller on CSS).

    Compressing is CPU work between awaits that may not suspend (a file read, an upstream
    relay with data already buffered), so after every ``YIELD_EVERY`` input bytes the
    stream lets the event loop run other connections.

    ``keep`` receives the whole compressed body once the source has ended, if it stayed
    within ``keep_limit`` bytes (for the compressed-body cache); a body that breaks off is
    never kept.
    """

    __slots__ = (
        "_closed",
        "_encoder",
        "_keep",
        "_keep_limit",
        "_kept",
        "_kept_size",
        "_make_encoder",
        "_on_close",
        "_source",
        "_unyielded",
    )

    def __init__(
        self,
        source: AsyncIterator[bytes],
        make_encoder: Callable[[], Encoder],
        on_close: Callable[[], None] | None = None,
        keep: Callable[[bytes], None] | None = None,
        keep_limit: int = 0,
    ) -> None:
        self._source = source
        # Created on the first read: a response that is never read (HEAD, a client that
        # went away) costs no encoder state.
        self._make_encoder = make_encoder
        self._encoder: Encoder | None = None
        self._unyielded = 0
        self._on_close = on_close
        self._keep = keep
        self._keep_limit = keep_limit
        self._kept: list[bytes] = []
        self._kept_size = 0
        self._closed = False

    def __aiter__(self) -> CompressedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = self._make_encoder()
        try:
            while True:
                try:
                    data = await self._source.__anext__()
                except StopAsyncIteration:
                    out = encoder.finish()
                    self._ended(out)
                    return out
                if not data:
                    continue
                out = encoder.compress(data) + encoder.flush()
                self._unyielded += len(data)
                if self._unyielded >= YIELD_EVERY:
                    self._unyielded = 0
                    await asyncio.sleep(0)
                if out:
                    if self._keep is not None:
                        self._collect(out)
                    return out
        except BaseException:
            await self.aclose()
            raise

    def _collect(self, out: bytes) -> None:
        self._kept_size += len(out)
        if self._kept_size > self._keep_limit:
            self._keep = None  # too big to cache: stop collecting
            self._kept = []
        else:
            self._kept.append(out)

    def _ended(self, tail: bytes) -> None:
        """The source is exhausted; ``tail`` is the last output."""
        keep = self._keep
        if keep is not None:
            self._collect(tail)
        self._closed = True
        self._encoder = None
        self._release()
        if keep is not None and self._keep is not None:
            keep(b"".join(self._kept))
        self._keep = None
        self._kept = []

    def _release(self) -> None:
        on_close = self._on_close
        if on_close is not None:
            self._on_close = None
            on_close()

    async def aclose(self) -> None:
        """Stop early: close the source and release what it holds."""
        if self._closed:
            return
        self._closed = True
        self._encoder = None
        self._keep = None
        self._kept = []
        try:
            await aclose_stream(self._source)
        finally:
            self._release()

    def __del__(self) -> None:
        # Dropped without being read or closed (the connection died before the response
        # started): an unstarted file reader has not opened its ``finally`` yet, so the
        # descriptor would leak. ``on_close`` is synchronous and idempotent.
        self._release()


class BodylessStream:
    """The stream of a HEAD response whose GET would be compressed: headers only.

    The connection sends no body for HEAD and closes the stream instead; if anything does
    read it, it is empty. The original stream is closed either way.
    """

    __slots__ = ("_closed", "_on_close", "_source")

    def __init__(
        self,
        source: AsyncIterator[bytes] | None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._on_close = on_close
        self._closed = False

    def __aiter__(self) -> BodylessStream:
        return self

    async def __anext__(self) -> bytes:
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._source is not None:
                await aclose_stream(self._source)
        finally:
            self._release()

    def _release(self) -> None:
        on_close = self._on_close
        if on_close is not None:
            self._on_close = None
            on_close()

    def __del__(self) -> None:
        self._release()
