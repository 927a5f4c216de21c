"""Brotli and gzip behind one small interface: one-shot for bytes, incremental for streams.

Window sizes are chosen from the body's size when it is known: a brotli encoder holds
about its window in memory for as long as it lives, and a proxied stream's encoder lives as
long as the response (minutes, for a slow download), so a 4 MiB window (brotli's default)
for a 20 KB page would be waste multiplied by every concurrent stream. A stream of unknown
length gets a 512 KiB window, which keeps nearly all of the ratio on web content.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli  # type: ignore[import-untyped]

from bext.compress.negotiate import BROTLI

_GZIP_WBITS = 31  # 32 KiB window, gzip header and trailer (what browsers expect)
_MIN_LGWIN = 16
_MAX_LGWIN = 22
STREAM_LGWIN = 19
"""Brotli window for a stream of unknown length (512 KiB)."""


def brotli_window(size: int | None) -> int:
    """The smallest brotli window (log2) that covers ``size`` bytes, within 64 KiB..4 MiB."""
    if size is None:
        return STREAM_LGWIN
    return max(_MIN_LGWIN, min(_MAX_LGWIN, (size - 1).bit_length()))


class Encoder(Protocol):
    """An incremental compressor."""

    def compress(self, data: bytes) -> bytes:
        """Feed ``data``; return whatever output is ready (often nothing)."""

    def flush(self) -> bytes:
        """Everything fed so far, decodable now; the stream stays open."""

    def finish(self) -> bytes:
        """The rest of the output and the end of the stream."""


class BrotliEncoder:
    __slots__ = ("_brotli",)

    def __init__(self, quality: int, lgwin: int) -> None:
        self._brotli = brotli.Compressor(quality=quality, lgwin=lgwin)

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._brotli.process(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._brotli.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._brotli.finish()
        return out


class GzipEncoder:
    __slots__ = ("_zlib",)

    def __init__(self, level: int) -> None:
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data)

    def flush(self) -> bytes:
        return self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._zlib.flush(zlib.Z_FINISH)


class Codecs:
    """The configured quality settings, applied to either coding."""

    __slots__ = ("brotli_quality", "gzip_level")

    def __init__(self, brotli_quality: int, gzip_level: int) -> None:
        self.brotli_quality = brotli_quality
        self.gzip_level = gzip_level

    def compress(self, encoding: str, data: bytes) -> bytes:
        """``data`` compressed in one go."""
        if encoding == BROTLI:
            out: bytes = brotli.compress(
                data, quality=self.brotli_quality, lgwin=brotli_window(len(data))
            )
            return out
        return zlib.compress(data, self.gzip_level, _GZIP_WBITS)

    def encoder(self, encoding: str, size: int | None) -> Encoder:
        """An incremental encoder for a body of ``size`` bytes (None: unknown)."""
        if encoding == BROTLI:
            return BrotliEncoder(self.brotli_quality, brotli_window(size))
        return GzipEncoder(self.gzip_level)
