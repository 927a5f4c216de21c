"""A response body that is a byte range of an open file.

On a plain TCP connection the HTTP/1.1 writer sends it with ``os.sendfile`` (zero copy:
the bytes never enter Python); anywhere else (TLS, HTTP/2, HTTP/3) it is read in chunks
with ``pread``. Either way memory per download stays at most one chunk.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

CHUNK = 256 * 1024


class FileBody:
    __slots__ = ("count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd = fd
        self.offset = offset
        self.count = count

    async def chunks(self) -> AsyncIterator[bytes]:
        """The range as chunks (for transports that cannot sendfile); closes the file."""
        try:
            position = self.offset
            end = self.offset + self.count
            while position < end:
                data = os.pread(self.fd, min(CHUNK, end - position), position)
                if not data:
                    raise OSError(f"file shrank while being sent ({position} of {end})")
                position += len(data)
                yield data
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
