"""The response store shared by all workers: one LMDB environment plus body files.

Layout under the directory the caller passes (``[cache] path``)::

    data.mdb, lock.mdb     the LMDB environment (metadata, small bodies, index, LRU order)
    bodies/xx/<id>-<n>     bodies over ``inline_limit``, one file per stored write
    bodies/xx/.tmp.<n>     a body being written (removed at open() when stale)

Sub-databases of the environment:

* ``index``: primary key -> the full primary key and the secondary key digests of its
  variants (RFC 9111 §4.1). Keys are the primary key itself (ordered, so purge by URL prefix
  is a cursor range), or its first 400 bytes plus a SHA-256 when longer (LMDB's key limit is
  511 bytes).
* ``meta``: entry id (SHA-256 of digest and primary) -> JSON metadata (status, headers,
  times, tags and their generations, Vary fields, body length, body file name).
* ``body``: entry id -> body, for bodies up to ``inline_limit``.
* ``atime`` / ``lru``: entry id -> last access (ns), and (access ns, entry id) ordered for
  LRU eviction. The access time is rewritten at most once per ``touch_interval`` per entry,
  since it costs a write transaction.
* ``info``: the total size of the entries (metadata + bodies, inline or in files) and an
  eviction counter.

Atomicity: a large body is written to a temporary file in its final directory, then renamed
to a name no other write uses, and only then is the LMDB record committed; the record a
writer replaces (and its file) is removed in the same transaction (the file right after the
commit). LMDB serialises write transactions across processes, so two writers of one key end
with the last complete write and never a mix. A writer killed before its commit leaves a
temporary file (removed at the next :meth:`Store.open` once older than ``temp_max_age``) or,
in the window between its rename and its commit, an unreferenced body file that
:meth:`Store.sweep_orphans` removes.

Fork: an LMDB environment must not cross ``fork()``. Build the :class:`Store` anywhere, but
call :meth:`Store.open` in each worker after the fork, and :meth:`Store.close` before the
worker exits. Every method refuses to run in a process other than the one that opened it.

The path must be on a local filesystem (LMDB's lock file does not work over NFS). All
methods are blocking; they never await (the callers decide where to run them).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import lmdb

from bext.cache.vary import SecondaryKey
from bext.protocol.events import Headers
from bext.runtime.pid import current_pid

DEFAULT_INLINE_LIMIT = 256 * 1024
"""Bodies up to this many bytes are kept in LMDB; larger ones in files."""

FORMAT_VERSION = 1
"""The version of the metadata records; a record of another version is a miss."""

_INDEX_KEY_MAX = 400
_CHUNK = 1024 * 1024
_MIB = 1024 * 1024
_TMP_PREFIX = ".tmp."
_TOTAL = b"total"
_EVICTIONS = b"evictions"
_U64 = struct.Struct(">Q")


class StoreError(RuntimeError):
    """The store is used wrongly (not opened, or across a fork)."""


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """What the caller stores with a body (``put``)."""

    status: int
    headers: Headers
    request_time: float
    """When the request that produced the response was sent upstream (RFC 9111 §4.2.3)."""
    response_time: float
    """When the response was received (RFC 9111 §4.2.3)."""
    tags: tuple[bytes, ...] = ()
    """The names of the entry's cache tags."""
    tag_generations: tuple[tuple[int, int], ...] = ()
    """``(tag hash, generation)`` of each tag when the entry was stored."""


@dataclass(slots=True)
class StoredResponse:
    """An entry found by :meth:`Store.get`.

    Exactly one of ``body`` (inline bodies) and ``fd`` (file-backed bodies, to ``sendfile``
    or ``os.pread`` from ``offset`` for ``length`` bytes) is set. The caller owns ``fd`` and
    must :meth:`close` it (or use the object as a context manager).
    """

    primary: bytes
    digest: str
    status: int
    headers: Headers
    request_time: float
    response_time: float
    tags: tuple[bytes, ...]
    tag_generations: tuple[tuple[int, int], ...]
    secondary: SecondaryKey
    length: int
    body: bytes | None = None
    fd: int | None = None
    offset: int = 0
    stale: bool = False
    """A soft purge marked it stale (:meth:`Store.mark_stale`)."""

    def close(self) -> None:
        """Close the body's file descriptor, if any."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> StoredResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of the store (:meth:`Store.stats`)."""

    entries: int
    bytes: int
    """Metadata plus bodies, inline and in files: what ``max_size`` bounds."""
    max_size: int
    evictions: int
    """Entries evicted for space since the environment was created or cleared."""
    map_size: int
    map_used: int
    """Bytes of the LMDB map in use (pages up to the last one written)."""


@dataclass(slots=True)
class _Record:
    """A decoded ``meta`` record."""

    primary: bytes
    digest: str
    status: int
    headers: Headers
    request_time: float
    response_time: float
    tags: tuple[bytes, ...]
    tag_generations: tuple[tuple[int, int], ...]
    fields: tuple[tuple[bytes, bytes | None], ...]
    length: int
    file: str | None
    stale: bool = False
    """Marked stale by a soft purge: served stale at most while it is refreshed."""

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "p": _s(self.primary),
            "d": self.digest,
            "s": self.status,
            "h": [[_s(n), _s(v)] for n, v in self.headers],
            "qt": self.request_time,
            "rt": self.response_time,
            "t": [_s(t) for t in self.tags],
            "g": [list(g) for g in self.tag_generations],
            "vf": [[_s(n), None if v is None else _s(v)] for n, v in self.fields],
            "n": self.length,
            "f": self.file,
        }
        if self.stale:
            doc["x"] = 1
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Record | None:
        try:
            doc = json.loads(raw)
            if doc.get("v") != FORMAT_VERSION:
                return None
            return cls(
                primary=_b(doc["p"]),
                digest=str(doc["d"]),
                status=int(doc["s"]),
                headers=[(_b(n), _b(v)) for n, v in doc["h"]],
                request_time=float(doc["qt"]),
                response_time=float(doc["rt"]),
                tags=tuple(_b(t) for t in doc["t"]),
                tag_generations=tuple((int(h), int(g)) for h, g in doc["g"]),
                fields=tuple((_b(n), None if v is None else _b(v)) for n, v in doc["vf"]),
                length=int(doc["n"]),
                file=doc["f"],
                stale=bool(doc.get("x", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _s(value: bytes) -> str:
    return value.decode("latin-1")


def _b(value: str) -> bytes:
    return value.encode("latin-1")


def index_key(primary: bytes) -> bytes:
    """The ``index`` key of a primary key: itself up to 400 bytes, else its first 400 bytes
    and its SHA-256 (the lengths differ, so the two forms never collide)."""
    if len(primary) <= _INDEX_KEY_MAX:
        return primary
    return primary[:_INDEX_KEY_MAX] + hashlib.sha256(primary).digest()


def entry_id(primary: bytes, digest: str) -> bytes:
    """The id of one variant: SHA-256 of the digest (hex, no NUL), a NUL and the primary."""
    return hashlib.sha256(digest.encode("ascii") + b"\x00" + primary).digest()


def _encode_index(primary: bytes, digests: list[str]) -> bytes:
    return json.dumps({"p": _s(primary), "v": digests}, separators=(",", ":")).encode()


def _decode_index(raw: bytes) -> tuple[bytes, list[str]]:
    doc = json.loads(raw)
    return _b(doc["p"]), [str(d) for d in doc["v"]]


@dataclass(slots=True)
class _Write:
    """State of one write transaction: the running total and the files to unlink after."""

    txn: lmdb.Transaction[bytes]
    total: int
    unlink: list[str] = field(default_factory=list)
    evicted: int = 0


class Store:
    """The shared response store (see the module documentation for the layout).

    ``Store(path, max_size, max_object_size, inline_limit)`` only records its settings;
    :meth:`open` (in the worker, after fork) opens the environment. ``max_size`` bounds the
    total bytes of the entries (metadata + bodies); the LMDB map is made larger
    (``max_size * 1.5 + 16 MiB``) for its page and copy-on-write overhead. Entries whose body
    exceeds ``max_object_size`` are refused by :meth:`put`.

    ``touch_interval`` (seconds) limits how often a hit rewrites an entry's access time;
    ``temp_max_age`` (seconds) is the age past which :meth:`open` removes temporary files of
    dead writers; ``fsync`` makes body files durable before they are published.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_size: int,
        max_object_size: int,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        *,
        touch_interval: float = 60.0,
        temp_max_age: float = 600.0,
        fsync: bool = False,
        max_readers: int = 1024,
    ) -> None:
        if max_size <= 0 or max_object_size <= 0:
            raise ValueError("max_size and max_object_size must be positive")
        self.path = Path(path)
        self.max_size = max_size
        self.max_object_size = min(max_object_size, max_size)
        self.inline_limit = min(inline_limit, self.max_object_size)
        self.touch_interval = touch_interval
        self.temp_max_age = temp_max_age
        self.fsync = fsync
        self.max_readers = max_readers
        self.map_size = max_size + max_size // 2 + 16 * _MIB
        self.on_temp_written: Callable[[str], None] | None = None
        """Test hook: called with the temporary file's path once the body is written."""
        self._env: lmdb.Environment | None = None
        self._pid = 0
        self._dbs: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open the environment in this process (call it in each worker after ``fork``) and
        remove temporary body files older than ``temp_max_age``."""
        if self._env is not None and self._pid == current_pid():
            return
        self._env = None  # an environment inherited across fork is never touched
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "bodies").mkdir(exist_ok=True)
        env = lmdb.open(
            str(self.path),
            map_size=self.map_size,
            subdir=True,
            max_dbs=8,
            max_readers=self.max_readers,
            metasync=False,
            readahead=False,
            lock=True,
        )
        try:
            if env.info()["map_size"] < self.map_size:
                env.set_mapsize(self.map_size)
            with env.begin(write=True) as txn:
                self._dbs = {
                    name: env.open_db(name.encode(), txn=txn)
                    for name in ("index", "meta", "body", "atime", "lru", "info")
                }
        except BaseException:
            env.close()  # opened but unusable: not left for the garbage collector
            raise
        self._env = env
        self._pid = current_pid()
        self._clean_temp_files()

    def close(self) -> None:
        """Close the environment (a no-op when not open, or in a forked child)."""
        if self._env is not None and self._pid == current_pid():
            self._env.close()
        self._env = None
        self._dbs = {}

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _opened(self) -> lmdb.Environment:
        if self._env is None:
            raise StoreError("the store is not open")
        if self._pid != current_pid():  # per lookup: no system call
            raise StoreError("the store was opened before fork; call open() in this process")
        return self._env

    # -- reading -----------------------------------------------------------------------------

    def get(self, primary: bytes, request_headers: Headers) -> StoredResponse | None:
        """The stored variant of ``primary`` whose secondary key matches the request
        (RFC 9111 §4.1; the most recent when several do), or ``None``."""
        env = self._opened()
        for _attempt in range(3):
            with env.begin() as txn:
                found = self._select(txn, primary, request_headers)
                if found is None:
                    return None
                eid, rec = found
                raw_atime = txn.get(eid, db=self._dbs["atime"])
                body = None if rec.file else txn.get(eid, db=self._dbs["body"])
            response = StoredResponse(
                primary=rec.primary,
                digest=rec.digest,
                status=rec.status,
                headers=rec.headers,
                request_time=rec.request_time,
                response_time=rec.response_time,
                tags=rec.tags,
                tag_generations=rec.tag_generations,
                secondary=SecondaryKey(rec.fields),
                length=rec.length,
                stale=rec.stale,
            )
            if rec.file is None:
                if body is None or len(body) != rec.length:
                    return None
                response.body = body
            else:
                fd = self._open_body(rec.file, rec.length)
                if fd is None:
                    continue  # replaced (and its file removed) since our snapshot: look again
                response.fd = fd
            if raw_atime is not None:
                self._touch(eid, _U64.unpack(raw_atime)[0])
            return response
        return None

    def _select(
        self, txn: lmdb.Transaction[bytes], primary: bytes, request_headers: Headers
    ) -> tuple[bytes, _Record] | None:
        raw = txn.get(index_key(primary), db=self._dbs["index"])
        if raw is None:
            return None
        full, digests = _decode_index(raw)
        if full != primary:
            return None
        best: tuple[bytes, _Record] | None = None
        for digest in digests:
            eid = entry_id(primary, digest)
            raw_meta = txn.get(eid, db=self._dbs["meta"])
            if raw_meta is None:
                continue
            rec = _Record.decode(raw_meta)
            if rec is None or not SecondaryKey(rec.fields).matches(request_headers):
                continue
            if best is None or rec.response_time > best[1].response_time:
                best = (eid, rec)
        return best

    def _open_body(self, name: str, length: int) -> int | None:
        try:
            fd = os.open(self._body_path(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        if os.fstat(fd).st_size != length:
            os.close(fd)
            return None
        return fd

    def _touch(self, eid: bytes, atime_ns: int) -> None:
        now = time.time_ns()
        if now - atime_ns < self.touch_interval * 1e9:
            return
        env = self._opened()
        with env.begin(write=True) as txn:
            raw = txn.get(eid, db=self._dbs["atime"])
            if raw is None:
                return  # removed meanwhile
            txn.delete(raw + eid, db=self._dbs["lru"])
            stamp = _U64.pack(now)
            txn.put(stamp + eid, b"", db=self._dbs["lru"])
            txn.put(eid, stamp, db=self._dbs["atime"])

    # -- writing -----------------------------------------------------------------------------

    def put(
        self,
        primary: bytes,
        secondary: SecondaryKey,
        meta: EntryMeta,
        body: bytes | BinaryIO,
    ) -> bool:
        """Store a response; ``False`` (nothing stored) when its body exceeds
        ``max_object_size`` or its ``Vary`` is ``*``. ``body`` is bytes or a binary file read
        to its end in chunks (never held whole in memory when over ``inline_limit``). The
        variant with the same secondary key, if any, is replaced; least recently used
        entries are evicted to keep the total under ``max_size``."""
        env = self._opened()
        if secondary.star:
            return False
        digest = secondary.digest()
        eid = entry_id(primary, digest)
        inline: bytes | None
        file_name: str | None = None
        if isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
            if len(data) > self.max_object_size:
                return False
            if len(data) <= self.inline_limit:
                inline, length = data, len(data)
            else:
                inline = None
                written = self._write_file(eid, [data])
                assert written is not None
                file_name, length = written
        else:
            head = _read_up_to(body, self.inline_limit + 1)
            if len(head) <= self.inline_limit:
                inline, length = head, len(head)
            else:
                inline = None
                written = self._write_file(eid, _chain(head, body))
                if written is None:
                    return False
                file_name, length = written
        rec = _Record(
            primary=primary,
            digest=digest,
            status=meta.status,
            headers=list(meta.headers),
            request_time=meta.request_time,
            response_time=meta.response_time,
            tags=tuple(meta.tags),
            tag_generations=tuple(meta.tag_generations),
            fields=secondary.fields,
            length=length,
            file=file_name,
        )
        encoded = rec.encode()
        for attempt in range(2):
            try:
                with self._write(env) as w:
                    self._insert(w, primary, eid, rec, encoded, inline)
                return True
            except lmdb.MapFullError:
                if attempt == 0:
                    self._evict_fraction(env, len(encoded) + (len(inline) if inline else 0))
        if file_name is not None:
            _unlink(self._body_path(file_name))
        return False

    def _write_file(
        self, eid: bytes, chunks: Iterator[bytes] | list[bytes]
    ) -> tuple[str, int] | None:
        """Write a body aside and publish it under a fresh name; ``None`` when it turned out
        larger than ``max_object_size`` (the temporary file is removed)."""
        directory = self.path / "bodies" / eid.hex()[:2]
        directory.mkdir(exist_ok=True)
        token = os.urandom(8).hex()
        tmp = directory / f"{_TMP_PREFIX}{token}"
        published = False
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            length = 0
            for chunk in chunks:
                length += len(chunk)
                if length > self.max_object_size:
                    return None
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            if self.on_temp_written is not None:
                self.on_temp_written(str(tmp))
            name = f"{eid.hex()[:2]}/{eid.hex()}-{token}"
            os.rename(tmp, self._body_path(name))
            published = True
            return name, length
        finally:
            if fd >= 0:
                os.close(fd)
            if not published:
                _unlink(str(tmp))

    def _insert(
        self,
        w: _Write,
        primary: bytes,
        eid: bytes,
        rec: _Record,
        encoded: bytes,
        inline: bytes | None,
    ) -> None:
        ikey = index_key(primary)
        raw_index = w.txn.get(ikey, db=self._dbs["index"])
        digests = _decode_index(raw_index)[1] if raw_index is not None else []
        self._remove(w, eid, fix_index=False)
        if rec.digest not in digests:
            digests.append(rec.digest)
        w.txn.put(ikey, _encode_index(primary, digests), db=self._dbs["index"])
        w.txn.put(eid, encoded, db=self._dbs["meta"])
        if inline is not None:
            w.txn.put(eid, inline, db=self._dbs["body"])
        stamp = _U64.pack(time.time_ns())
        w.txn.put(eid, stamp, db=self._dbs["atime"])
        w.txn.put(stamp + eid, b"", db=self._dbs["lru"])
        w.total += len(encoded) + rec.length
        self._evict(w, self.max_size, keep=eid)

    def update_headers(
        self,
        primary: bytes,
        secondary_digest: str,
        headers: Headers,
        *,
        request_time: float | None = None,
        response_time: float | None = None,
        tag_generations: tuple[tuple[int, int], ...] | None = None,
    ) -> bool:
        """Replace a variant's stored headers (after a 304, RFC 9111 §4.3.4), and its
        request and response times and tag generations when given; a soft purge's stale
        mark goes (the response was just validated). ``False`` when the variant is gone."""
        env = self._opened()
        eid = entry_id(primary, secondary_digest)
        with self._write(env) as w:
            raw = w.txn.get(eid, db=self._dbs["meta"])
            rec = _Record.decode(raw) if raw is not None else None
            if raw is None or rec is None:
                return False
            rec.headers = list(headers)
            if request_time is not None:
                rec.request_time = request_time
            if response_time is not None:
                rec.response_time = response_time
            if tag_generations is not None:
                rec.tag_generations = tuple(tag_generations)
            rec.stale = False
            encoded = rec.encode()
            w.txn.put(eid, encoded, db=self._dbs["meta"])
            w.total += len(encoded) - len(raw)
            self._evict(w, self.max_size, keep=eid)
        return True

    def delete(self, primary: bytes) -> int:
        """Remove every variant of ``primary``; the number removed."""
        env = self._opened()
        with self._write(env) as w:
            return self._delete_primary(w, index_key(primary), primary)

    def delete_prefix(
        self,
        prefix: bytes,
        match: Callable[[bytes], bool] | None = None,
        changed: list[bytes] | None = None,
    ) -> int:
        """Remove every variant of every primary key starting with ``prefix`` (purge by URL
        prefix) and, if given, for which ``match(primary)`` is true; the number removed.
        The primary keys found are appended to ``changed`` when it is given."""
        env = self._opened()
        with self._write(env) as w:
            found = self._primaries(w, prefix, match)
            if changed is not None:
                changed.extend(full for _, full in found)
            return sum(self._delete_primary(w, key, full) for key, full in found)

    def mark_stale(
        self,
        prefix: bytes,
        match: Callable[[bytes], bool] | None = None,
        changed: list[bytes] | None = None,
    ) -> int:
        """Mark every variant of the primary keys that :meth:`delete_prefix` would remove
        as stale instead (a soft purge); the number marked."""
        env = self._opened()
        marked = 0
        with self._write(env) as w:
            found = self._primaries(w, prefix, match)
            if changed is not None:
                changed.extend(full for _, full in found)
            for _, full in found:
                raw_index = w.txn.get(index_key(full), db=self._dbs["index"])
                if raw_index is None:
                    continue
                for digest in _decode_index(raw_index)[1]:
                    eid = entry_id(full, digest)
                    raw = w.txn.get(eid, db=self._dbs["meta"])
                    rec = _Record.decode(raw) if raw is not None else None
                    if raw is None or rec is None or rec.stale:
                        continue
                    rec.stale = True
                    encoded = rec.encode()
                    w.txn.put(eid, encoded, db=self._dbs["meta"])
                    w.total += len(encoded) - len(raw)
                    marked += 1
        return marked

    def _primaries(
        self, w: _Write, prefix: bytes, match: Callable[[bytes], bool] | None
    ) -> list[tuple[bytes, bytes]]:
        """``(index key, primary key)`` of every primary starting with ``prefix`` (and that
        ``match`` accepts): one ordered range of the index."""
        scan = prefix[:_INDEX_KEY_MAX]
        found: list[tuple[bytes, bytes]] = []
        cursor = w.txn.cursor(db=self._dbs["index"])
        if cursor.set_range(scan):
            for key, raw in cursor:
                if not key.startswith(scan):
                    break
                full, _ = _decode_index(raw)
                if full.startswith(prefix) and (match is None or match(full)):
                    found.append((key, full))
        cursor.close()
        return found

    def clear(self) -> int:
        """Remove every entry; the number removed."""
        env = self._opened()
        with self._write(env) as w:
            count = 0
            for _, raw in w.txn.cursor(db=self._dbs["meta"]):
                count += 1
                rec = _Record.decode(raw)
                if rec is not None and rec.file is not None:
                    w.unlink.append(self._body_path(rec.file))
            for name in ("index", "meta", "body", "atime", "lru", "info"):
                w.txn.drop(self._dbs[name], delete=False)
            w.total = 0
        return count

    def sweep_orphans(self, min_age: float | None = None) -> int:
        """Remove body files no entry references, older than ``min_age`` seconds (default
        ``temp_max_age``): left by a writer killed between publishing its file and
        committing. Reads the whole ``meta`` database: for a periodic or startup task, not
        the request path. Returns the number of files removed."""
        env = self._opened()
        age = self.temp_max_age if min_age is None else min_age
        with env.begin() as txn:
            referenced = set()
            for _, raw in txn.cursor(db=self._dbs["meta"]):
                rec = _Record.decode(raw)
                if rec is not None and rec.file is not None:
                    referenced.add(rec.file)
        removed = 0
        deadline = time.time() - age
        for name, entry in self._body_files():
            if entry.name.startswith(_TMP_PREFIX) or name in referenced:
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < deadline:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def stats(self) -> StoreStats:
        """Entry count, accounted bytes, evictions and map usage."""
        env = self._opened()
        with env.begin() as txn:
            entries = txn.stat(self._dbs["meta"])["entries"]
            total = _get_u64(txn, self._dbs["info"], _TOTAL)
            evictions = _get_u64(txn, self._dbs["info"], _EVICTIONS)
        info = env.info()
        stat = env.stat()
        return StoreStats(
            entries=entries,
            bytes=total,
            max_size=self.max_size,
            evictions=evictions,
            map_size=info["map_size"],
            map_used=(info["last_pgno"] + 1) * stat["psize"],
        )

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, env: lmdb.Environment) -> Iterator[_Write]:
        """A write transaction carrying the running total; committed (with the total and
        the eviction counter) on success, then the replaced files are unlinked."""
        with env.begin(write=True) as txn:
            info = self._dbs["info"]
            w = _Write(txn, _get_u64(txn, info, _TOTAL))
            yield w
            txn.put(_TOTAL, _U64.pack(max(w.total, 0)), db=info)
            if w.evicted:
                txn.put(_EVICTIONS, _U64.pack(_get_u64(txn, info, _EVICTIONS) + w.evicted), db=info)
        for path in w.unlink:
            _unlink(path)

    def _remove(self, w: _Write, eid: bytes, *, fix_index: bool = True) -> bool:
        """Remove one entry in ``w``; its file is unlinked after the commit."""
        raw = w.txn.get(eid, db=self._dbs["meta"])
        if raw is None:
            return False
        rec = _Record.decode(raw)
        w.txn.delete(eid, db=self._dbs["meta"])
        w.txn.delete(eid, db=self._dbs["body"])
        stamp = w.txn.get(eid, db=self._dbs["atime"])
        if stamp is not None:
            w.txn.delete(stamp + eid, db=self._dbs["lru"])
            w.txn.delete(eid, db=self._dbs["atime"])
        length = 0
        if rec is not None:
            length = rec.length
            if rec.file is not None:
                w.unlink.append(self._body_path(rec.file))
            if fix_index:
                ikey = index_key(rec.primary)
                raw_index = w.txn.get(ikey, db=self._dbs["index"])
                if raw_index is not None:
                    full, digests = _decode_index(raw_index)
                    rest = [d for d in digests if d != rec.digest]
                    if rest:
                        w.txn.put(ikey, _encode_index(full, rest), db=self._dbs["index"])
                    else:
                        w.txn.delete(ikey, db=self._dbs["index"])
        w.total -= len(raw) + length
        return True

    def _delete_primary(self, w: _Write, ikey: bytes, primary: bytes) -> int:
        raw = w.txn.get(ikey, db=self._dbs["index"])
        if raw is None:
            return 0
        full, digests = _decode_index(raw)
        if full != primary:
            return 0
        removed = sum(self._remove(w, entry_id(full, d), fix_index=False) for d in digests)
        w.txn.delete(ikey, db=self._dbs["index"])
        return removed

    def _evict(self, w: _Write, target: int, keep: bytes | None = None) -> None:
        """Remove least recently used entries until the total is at most ``target``."""
        cursor = w.txn.cursor(db=self._dbs["lru"])
        while w.total > target:
            if not cursor.first():
                break
            eid = cursor.key()[8:]
            if eid == keep:
                if not cursor.next():
                    break
                eid = cursor.key()[8:]
            if not self._remove(w, eid):
                cursor.delete()  # an LRU key without an entry
                continue
            w.evicted += 1
        cursor.close()

    def _evict_fraction(self, env: lmdb.Environment, needed: int) -> None:
        """After ``MapFullError``: free a tenth of the store (at least twice ``needed``)."""
        with self._write(env) as w:
            self._evict(w, max(0, w.total - max(w.total // 10, 2 * needed)))

    def _body_path(self, name: str) -> str:
        return str(self.path / "bodies" / name)

    def _body_files(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Every file under ``bodies/`` as ``(body file name, entry)``."""
        for directory in (self.path / "bodies").iterdir():
            if directory.is_dir():
                with os.scandir(directory) as entries:
                    for entry in entries:
                        yield f"{directory.name}/{entry.name}", entry

    def _clean_temp_files(self) -> None:
        deadline = time.time() - self.temp_max_age
        for _, entry in self._body_files():
            if entry.name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime <= deadline:
                        os.unlink(entry.path)


def _get_u64(txn: lmdb.Transaction[bytes], db: Any, key: bytes) -> int:
    raw = txn.get(key, db=db)
    return int(_U64.unpack(raw)[0]) if raw is not None else 0


def _read_up_to(stream: BinaryIO, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _chain(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    yield head
    while chunk := stream.read(_CHUNK):
        yield chunk


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
