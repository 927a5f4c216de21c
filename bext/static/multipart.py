"""``multipart/byteranges`` bodies for requests with several ranges (RFC 9110 section 14.6).

The boundary is random per response (it must not occur in the data, and a fixed one
could be planted in an uploaded media file). The length of the whole body is computed up
front, so the response carries Content-Length and needs no chunking. Files held in memory
get the body as bytes; larger files stream it part by part, reading at most
:data:`~bext.http.filebody.CHUNK` bytes at a time, and open the file only when the first
byte is wanted (a stream that is never iterated, for example because the client went
away, then holds no file descriptor).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import AsyncIterator

from bext.http.filebody import CHUNK

__all__ = ["Byteranges"]


class Byteranges:
    """The framing of one multipart/byteranges body: boundary, part heads, total length."""

    __slots__ = ("boundary", "heads", "length", "ranges", "tail")

    def __init__(self, ranges: list[tuple[int, int]], size: int, part_type: bytes) -> None:
        self.ranges = ranges
        self.boundary = secrets.token_hex(16).encode("ascii")
        heads = []
        for index, (first, last) in enumerate(ranges):
            heads.append(
                (b"" if index == 0 else b"\r\n")
                + b"--"
                + self.boundary
                + b"\r\nContent-Type: "
                + part_type
                + b"\r\nContent-Range: bytes %d-%d/%d\r\n\r\n" % (first, last, size)
            )
        self.heads = heads
        self.tail = b"\r\n--" + self.boundary + b"--\r\n"
        self.length = (
            sum(len(head) for head in heads)
            + sum(last - first + 1 for first, last in ranges)
            + len(self.tail)
        )

    @property
    def content_type(self) -> bytes:
        return b"multipart/byteranges; boundary=" + self.boundary

    def from_bytes(self, data: bytes) -> bytes:
        """The whole body, for a file already in memory."""
        parts: list[bytes] = []
        for head, (first, last) in zip(self.heads, self.ranges, strict=True):
            parts.append(head)
            parts.append(data[first : last + 1])
        parts.append(self.tail)
        return b"".join(parts)

    async def from_file(self, path: str, expect: tuple[int, int, int, int]) -> AsyncIterator[bytes]:
        """The body streamed from ``path``, which must still be the file described by
        ``expect`` (st_dev, st_ino, st_size, st_mtime_ns) when it is opened."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if (
                not stat.S_ISREG(st.st_mode)
                or (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != expect
            ):
                raise OSError("file changed before its ranges were sent")
            for head, (first, last) in zip(self.heads, self.ranges, strict=True):
                yield head
                position = first
                end = last + 1
                while position < end:
                    data = os.pread(fd, min(CHUNK, end - position), position)
                    if not data:
                        raise OSError("file shrank while its ranges were sent")
                    position += len(data)
                    yield data
            yield self.tail
        finally:
            os.close(fd)
