"""What a static URL serves: its file's representations, with their headers built once.

A URL maps to one file and, when present and fresh, its precompressed variants; each is
a :class:`Representation` with everything a response needs precomputed at the moment the
file is (re)discovered: the header list of a 200 (Content-Type, ETag, Last-Modified,
Cache-Control, Accept-Ranges, Content-Encoding, Vary, then the rule's headers replacing
same-named ones), the shared 304 response, and for small files the body and the shared
200 response itself. The per-request work for a cached file is then a ``stat`` and
returning an object that already exists; the connection adds only Date, Server and
framing.

Every representation remembers the ``stat`` identity it was built from: device, inode,
size, mtime and ctime. ctime is kept although ETags use only mtime and size (like
nginx, so every server computes the same tag): ``cp -p`` or ``rsync --times`` can rewrite
a file in place keeping its size and mtime, but nobody can set ctime, so the server-side
cache still notices. Files are read through the descriptor whose ``fstat`` was checked
(``O_NONBLOCK``, so a FIFO swapped in between ``stat`` and ``open`` cannot hang the
worker), never by path after checking something else.
"""

from __future__ import annotations

import errno
import os
import stat

from bext.http.date import format_http_date
from bext.http.message import Response
from bext.protocol.events import Headers
from bext.static.conditional import etag_for
from bext.static.filecache import ContentCache
from bext.static.precompressed import IDENTITY

__all__ = [
    "Entry",
    "OutOfDescriptors",
    "Representation",
    "merge_headers",
    "open_regular",
    "read_file",
]

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_SUFFIXES = {"br": "-br", "gzip": "-gz"}


def merge_headers(own: Headers, rule: Headers) -> Headers:
    """``own`` fields, minus those the rule also sets (case-insensitively), then the rule's."""
    if not rule:
        return list(own)
    overridden = {name.lower() for name, _ in rule}
    return [field for field in own if field[0].lower() not in overridden] + list(rule)


class OutOfDescriptors(Exception):
    """Opening a file failed for want of descriptors (EMFILE, ENFILE): the file may be
    fine, the server is not; answered 503, never 404."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.errno = exc.errno


_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def open_regular(path: str) -> tuple[int, os.stat_result] | None:
    """Open ``path`` for reading if it is a regular file; the fd and its ``fstat``.

    None when there is no such regular file; raises :class:`OutOfDescriptors` when the
    process or the system has no descriptor left to open it with.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in _NO_DESCRIPTORS:
            raise OutOfDescriptors(exc) from exc
        return None
    except ValueError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def read_file(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes from the start of ``fd``, or None if the file changed size."""
    chunks: list[bytes] = []
    position = 0
    while position < size:
        data = os.pread(fd, size - position, position)
        if not data:
            return None
        chunks.append(data)
        position += len(data)
    if os.pread(fd, 1, size):
        return None  # grew while being read: do not cache a prefix
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Representation:
    """One byte sequence a URL can be answered with: the file, or a ``.br``/``.gz`` beside it.

    ``body``/``full`` are set while the content cache holds the bytes; ``cacheable`` says
    whether the file is small enough to be held at all (otherwise it is sent from a file
    descriptor). A Representation never changes what it describes: a changed file gets
    a new one.
    """

    __slots__ = (
        "body",
        "cacheable",
        "coding",
        "content_type",
        "ctime_ns",
        "dev",
        "etag",
        "full",
        "headers",
        "ino",
        "last_modified",
        "mtime_ns",
        "mtime_s",
        "not_modified",
        "path",
        "size",
        "vary",
    )

    def __init__(
        self,
        path: str,
        st: os.stat_result,
        coding: str,
        content_type: bytes,
        cache_control: bytes,
        vary: bool,
        rule_headers: Headers,
        cacheable: bool,
    ) -> None:
        self.path = path
        self.coding = coding
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.ctime_ns = st.st_ctime_ns
        self.mtime_s = st.st_mtime_ns // 1_000_000_000
        self.vary = vary
        self.cacheable = cacheable
        self.etag = etag_for(self.mtime_ns, self.size, _SUFFIXES.get(coding, ""))
        self.last_modified = format_http_date(self.mtime_s)
        own: Headers = [
            (b"Content-Type", content_type),
            (b"Last-Modified", self.last_modified),
            (b"ETag", self.etag),
            (b"Cache-Control", cache_control),
            (b"Accept-Ranges", b"bytes"),
            # Media roots hold uploads: never let a browser sniff an upload into HTML.
            (b"X-Content-Type-Options", b"nosniff"),
        ]
        validators: Headers = [(b"ETag", self.etag), (b"Cache-Control", cache_control)]
        if coding != IDENTITY:
            own.append((b"Content-Encoding", coding.encode("ascii")))
        if vary:
            own.append((b"Vary", b"Accept-Encoding"))
            validators.append((b"Vary", b"Accept-Encoding"))
        self.headers = merge_headers(own, rule_headers)
        self.content_type = next(
            (value for name, value in self.headers if name.lower() == b"content-type"),
            content_type,
        )
        self.not_modified = Response(304, merge_headers(validators, rule_headers))
        self.not_modified.shared = True
        self.body: bytes | None = None
        self.full: Response | None = None

    def same_file(self, st: os.stat_result) -> bool:
        """Whether ``st`` describes exactly the file version this was built from."""
        return (
            st.st_mtime_ns == self.mtime_ns
            and st.st_size == self.size
            and st.st_ino == self.ino
            and st.st_ctime_ns == self.ctime_ns
            and st.st_dev == self.dev
        )

    @property
    def identity_key(self) -> tuple[int, int, int, int]:
        """(st_dev, st_ino, st_size, st_mtime_ns), as a streamed body re-checks it."""
        return (self.dev, self.ino, self.size, self.mtime_ns)

    def open(self) -> int | None:
        """A descriptor on this very file version, or None if the path now holds another."""
        opened = open_regular(self.path)
        if opened is None:
            return None
        fd, st = opened
        if not self.same_file(st):
            os.close(fd)
            return None
        return fd

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.full = Response(200, self.headers, body)
        self.full.shared = True

    def evict(self) -> None:
        self.body = None
        self.full = None


class Entry:
    """What is known about one URL: its file's representations and when variants were seen.

    ``reps`` maps a content-coding ("identity", "br", "gzip") to its representation;
    ``variant_keys`` records what ``stat`` said about each possible variant path when the
    entry was built (None: absent or not a regular file), so a periodic re-``stat``
    notices a variant that appeared, changed or went away.
    """

    __slots__ = ("checked_at", "identity", "path", "reps", "variant_keys")

    def __init__(
        self,
        path: str,
        identity: Representation,
        reps: dict[str, Representation],
        variant_keys: tuple[tuple[int, int, int, int, int] | None, ...],
        checked_at: float,
    ) -> None:
        self.path = path
        self.identity = identity
        self.reps = reps
        self.variant_keys = variant_keys
        self.checked_at = checked_at

    def release(self, contents: ContentCache) -> None:
        for rep in self.reps.values():
            if rep.body is not None:
                contents.discard(rep)
                rep.evict()
