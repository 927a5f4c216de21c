"""The ``render = "static"`` handler: files under a root, answered without waiting.

Per request, for a file seen before (the fast path)::

    method check -> entry = dict lookup by URL path -> os.stat(file) -> same file?
    -> pick the representation (Accept-Encoding, only if variants exist)
    -> no conditional / Range header: return the prebuilt Response

Small files (up to ``static.max_cached_file``) come from a shared in-memory LRU whose
Response objects are built once and handed to every request (connections treat responses
as read-only; HEAD uses the same object, the connection just omits the body). Larger
files are opened per request, checked with ``fstat`` to be the version whose headers are
sent, and returned as a :class:`~bext.http.filebody.FileBody` for ``sendfile``. The
handler never awaits, so it always returns a Response directly.

Freshness without reloads: the one ``stat`` per request compares (dev, inode, size,
mtime, ctime) with the cached entry, so a changed, replaced or deleted file is never
served stale. Precompressed variants are re-``stat``-ed at most once per
:data:`VARIANT_RECHECK` seconds per URL (and whenever the file itself changes), which
bounds the extra system calls while a ``.br`` written after its source is picked up
within a second; a variant sent from disk is still ``fstat``-checked on every request.
Nothing ever walks a directory.

Rule headers (``headers = {...}``) go on 200, 206 and 304 responses and replace
same-named fields bext would send (a rule's ``cache-control`` wins). They are not added
to errors (404, 405, 416) or to the slash redirect: a rule's ``immutable`` on a 404 would
make browsers remember the 404 for a year.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from functools import partial
from urllib.parse import quote

from bext.config import Config
from bext.config.schema import RouteRule
from bext.handlers import QuickAnswer, QuickTarget
from bext.http.date import parse_http_date
from bext.http.errors import error_response
from bext.http.filebody import FileBody
from bext.http.message import Request, Response
from bext.limits.throttle import LogThrottle
from bext.protocol.events import Headers
from bext.static.cache_control import cache_control
from bext.static.conditional import if_range_matches, list_matches
from bext.static.filecache import ContentCache, EntryCache
from bext.static.mime import content_type
from bext.static.multipart import Byteranges
from bext.static.precompressed import IDENTITY, VARIANTS, preference
from bext.static.ranges import parse_range
from bext.static.representation import (
    Entry,
    OutOfDescriptors,
    Representation,
    open_regular,
    read_file,
)
from bext.static.resolve import Root, url_prefix

__all__ = ["ENTRY_LIMIT", "VARIANT_RECHECK", "StaticHandler", "static_handler"]

log = logging.getLogger("bext")
_descriptor_log = LogThrottle()

ENTRY_LIMIT = 8192
"""URLs whose metadata one static rule keeps (least recently used beyond that go)."""

VARIANT_RECHECK = 1.0
"""Seconds between re-``stat``s of a URL's possible ``.br``/``.gz`` variants."""

_ALLOW = [(b"Allow", b"GET, HEAD")]
_RETRY = [(b"Retry-After", b"1")]
_VARY = (b"Vary", b"Accept-Encoding")
# Request fields that change the answer; everything else is ignored without a lookup.
_WANTED = frozenset(
    {
        b"accept-encoding",
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"range",
        b"if-range",
    }
)
# Fields whose repeated lines combine into one comma-separated list (RFC 9110 5.3);
# any other field sent twice is malformed and gets ignored (an empty value).
_LISTS = frozenset({b"accept-encoding", b"if-none-match", b"if-match"})

_StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _regular_stat(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _collect(headers: Headers) -> dict[bytes, bytes]:
    """The request fields in :data:`_WANTED`, repeated lines combined (or voided)."""
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _WANTED:
            previous = fields.get(name)
            if previous is None:
                fields[name] = value
            else:
                fields[name] = previous + b", " + value if name in _LISTS else b""
    return fields


def _plain(headers: Headers) -> tuple[bool, bytes | None]:
    """Whether Accept-Encoding (once) is the only field in :data:`_WANTED`, and its value."""
    accept_encoding: bytes | None = None
    for name, value in headers:
        if name in _WANTED:
            if name != b"accept-encoding" or accept_encoding is not None:
                return False, None
            accept_encoding = value
    return True, accept_encoding


def _choose(entry: Entry, accept_encoding: bytes | None) -> Representation:
    """The representation the client prefers among those the file has."""
    reps = entry.reps
    for coding in preference(accept_encoding):
        rep = reps.get(coding)
        if rep is not None:
            return rep
    return entry.identity


_shared: tuple[Config, ContentCache] | None = None


def _content_cache(config: Config) -> ContentCache:
    """One byte budget (``static.memory_cache``) for all static rules of a configuration."""
    global _shared
    if _shared is None or _shared[0] is not config:
        _shared = (config, ContentCache(config.static.memory_cache))
    return _shared[1]


class _Changed(Exception):
    """The file changed between being checked and being read: resolve it again."""


class StaticHandler:
    """Serves one static rule: its root, prefix, index file and headers."""

    __slots__ = (
        "contents",
        "entries",
        "index_file",
        "max_age",
        "max_cached",
        "root",
        "rule_headers",
    )

    def __init__(self, rule: RouteRule, config: Config, headers: Headers) -> None:
        self.root = Root(
            rule.static_root(config.server.app_dir),
            url_prefix(rule.pattern),
            rule.allow_symlinks,
        )
        index = rule.index_file
        # Hidden files are never served, not even as an index.
        self.index_file = index if index and not index.startswith(".") else None
        self.rule_headers = list(headers)
        self.max_age = config.static.max_age
        static = config.static
        self.max_cached = min(static.max_cached_file, static.memory_cache)
        self.contents = _content_cache(config)
        self.entries: EntryCache[Entry] = EntryCache(ENTRY_LIMIT, self.contents)

    # -- per request ------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        method = request.method
        if method != "GET" and method != "HEAD":
            return error_response(405, request.header(b"accept"), extra_headers=_ALLOW)
        path = request.path
        entry = self.entries.items.get(path)
        if entry is None:
            return self._resolve(request)
        if not self._current(entry):
            return self._stale(request)
        self.entries.items.move_to_end(path)
        # Which fields matter? Usually only Accept-Encoding, and only with variants.
        plain, accept_encoding = _plain(request.headers)
        try:
            if plain:
                rep = _choose(entry, accept_encoding) if len(entry.reps) > 1 else entry.identity
                full = rep.full
                if full is not None:
                    self.contents.items.move_to_end(rep)
                    return full
                return self._full(rep)
            return self._respond(request, entry, _collect(request.headers))
        except _Changed:
            return self._stale(request)
        except OutOfDescriptors as exc:
            return _unavailable(request, exc)

    def quick_answer(self, target: QuickTarget) -> QuickAnswer:
        """:data:`~bext.handlers.QuickAnswers`: :meth:`quick` for the target's path."""
        return partial(self.quick, target.path)

    def quick(self, path: str, method: str, headers: Headers) -> Response | None:
        """:meth:`__call__`'s answer when it is a file from the memory cache sent whole:
        the same ``stat`` check, the same choice of representation. Anything else (not
        seen yet, changed, a conditional or Range request, a file sent from disk) is
        None: the full path answers it."""
        if method != "GET" and method != "HEAD":
            return None
        entry = self.entries.items.get(path)
        if entry is None or not self._current(entry):
            return None
        plain, accept_encoding = _plain(headers)
        if not plain:
            return None
        rep = _choose(entry, accept_encoding) if len(entry.reps) > 1 else entry.identity
        full = rep.full
        if full is None:
            return None
        self.entries.items.move_to_end(path)
        self.contents.items.move_to_end(rep)
        return full

    def _current(self, entry: Entry) -> bool:
        """The cached entry still describes the disk: one stat, compared field by field."""
        try:
            st = os.stat(entry.path)
        except (OSError, ValueError):
            return False
        rep = entry.identity
        return not (
            st.st_mtime_ns != rep.mtime_ns
            or st.st_size != rep.size
            or st.st_ino != rep.ino
            or st.st_ctime_ns != rep.ctime_ns
            or st.st_dev != rep.dev
            or (
                time.monotonic() - entry.checked_at >= VARIANT_RECHECK
                and not self._variants_current(entry)
            )
        )

    def _stale(self, request: Request) -> Response:
        """The cached entry no longer describes the disk: forget it and look again."""
        self.entries.drop(request.path)
        return self._resolve(request)

    def _variants_current(self, entry: Entry) -> bool:
        """False when a variant appeared, changed or vanished (checked once a second)."""
        for (_, suffix), seen in zip(VARIANTS, entry.variant_keys, strict=True):
            st = _regular_stat(entry.path + suffix)
            if (None if st is None else _stat_key(st)) != seen:
                return False
        entry.checked_at = time.monotonic()
        return True

    def _respond(self, request: Request, entry: Entry, fields: dict[bytes, bytes]) -> Response:
        """Pick the representation, then apply preconditions and Range if any were sent."""
        rep = entry.identity
        if len(entry.reps) > 1:
            rep = _choose(entry, fields.get(b"accept-encoding"))
        if not fields or (len(fields) == 1 and b"accept-encoding" in fields):
            return self._full(rep)
        return self._conditional(request, rep, fields)

    def _conditional(
        self, request: Request, rep: Representation, fields: dict[bytes, bytes]
    ) -> Response:
        """Preconditions in RFC 9110 section 13.2.2 order, then Range."""
        if_match = fields.get(b"if-match")
        if if_match is not None:
            if not list_matches(if_match, rep.etag, weak_compare=False):
                return error_response(412, request.header(b"accept"))
        else:
            unmodified_since = fields.get(b"if-unmodified-since")
            if unmodified_since is not None:
                date = parse_http_date(unmodified_since)
                if date is not None and rep.mtime_s > date:
                    return error_response(412, request.header(b"accept"))
        if_none_match = fields.get(b"if-none-match")
        if if_none_match is not None:
            if list_matches(if_none_match, rep.etag, weak_compare=True):
                return rep.not_modified
        else:
            modified_since = fields.get(b"if-modified-since")
            if modified_since is not None:
                if modified_since == rep.last_modified:
                    return rep.not_modified
                date = parse_http_date(modified_since)
                if date is not None and rep.mtime_s <= date:
                    return rep.not_modified
        range_value = fields.get(b"range")
        if range_value is not None and request.method == "GET":
            if_range = fields.get(b"if-range")
            if if_range is None or if_range_matches(
                if_range, rep.etag, rep.last_modified, rep.mtime_s
            ):
                ranges = parse_range(range_value, rep.size)
                if ranges is not None:
                    return self._partial(request, rep, ranges)
        return self._full(rep)

    def _full(self, rep: Representation) -> Response:
        full = rep.full
        if full is not None:
            self.contents.touch(rep)
            return full
        if rep.cacheable and self._load(rep):
            assert rep.full is not None
            return rep.full
        fd = rep.open()
        if fd is None:
            raise _Changed
        return Response(200, rep.headers, file=FileBody(fd, 0, rep.size))

    def _partial(
        self, request: Request, rep: Representation, ranges: list[tuple[int, int]]
    ) -> Response:
        size = rep.size
        if not ranges:
            extra = [(b"Content-Range", b"bytes */%d" % size)]
            if rep.vary:
                extra.append(_VARY)
            return error_response(416, request.header(b"accept"), extra_headers=extra)
        body = rep.body
        if body is not None:
            self.contents.touch(rep)
        elif rep.cacheable and self._load(rep):
            body = rep.body
        if len(ranges) == 1:
            first, last = ranges[0]
            headers = [*rep.headers, (b"Content-Range", b"bytes %d-%d/%d" % (first, last, size))]
            if body is not None:
                return Response(206, headers, body[first : last + 1])
            fd = rep.open()
            if fd is None:
                raise _Changed
            return Response(206, headers, file=FileBody(fd, first, last - first + 1))
        parts = Byteranges(ranges, size, rep.content_type)
        headers = [field for field in rep.headers if field[0].lower() != b"content-type"]
        headers.append((b"Content-Type", parts.content_type))
        if body is not None:
            return Response(206, headers, parts.from_bytes(body))
        return Response(
            206,
            headers,
            stream=parts.from_file(rep.path, rep.identity_key),
            content_length=parts.length,
        )

    def _load(self, rep: Representation) -> bool:
        """Read a small file into the content cache; False if it no longer fits there."""
        opened = open_regular(rep.path)
        if opened is None:
            raise _Changed
        fd, st = opened
        try:
            if not rep.same_file(st):
                raise _Changed
            body = read_file(fd, rep.size)
        finally:
            os.close(fd)
        if body is None:
            raise _Changed
        rep.set_body(body)
        if not self.contents.add(rep, len(body)):
            rep.evict()
            rep.cacheable = False
            return False
        return True

    # -- (re)discovering a URL ------------------------------------------------------------

    def _resolve(self, request: Request, retry: bool = True) -> Response:
        """Map the URL to a file, check it, build its entry and answer."""
        try:
            return self._resolve_file(request, retry)
        except OutOfDescriptors as exc:
            return _unavailable(request, exc)

    def _resolve_file(self, request: Request, retry: bool) -> Response:
        accept = request.header(b"accept")
        path = request.path
        root = self.root
        rel = root.relative(path)
        if rel is None:
            log.debug("static: refused path %r", path)
            return error_response(404, accept)
        file_path = root.file_path(rel)
        if rel.endswith("/"):
            if self.index_file is None:
                return error_response(404, accept)
            file_path += self.index_file
        try:
            st = os.stat(file_path)
        except (OSError, ValueError):
            return error_response(404, accept)
        if stat.S_ISDIR(st.st_mode):
            if self.index_file is not None and not path.endswith("/"):
                return self._slash_redirect(request)
            return error_response(404, accept)
        if not stat.S_ISREG(st.st_mode) or not root.contains(file_path):
            return error_response(404, accept)
        entry = self._build(file_path, st)
        if entry is None:
            return error_response(404, accept)
        self.entries.put(path, entry)
        try:
            return self._respond(request, entry, _collect(request.headers))
        except _Changed:
            self.entries.drop(path)
            if retry:
                return self._resolve(request, retry=False)
            # Still changing under our feet (being written right now): try again shortly.
            return error_response(503, accept, extra_headers=_RETRY)

    def _slash_redirect(self, request: Request) -> Response:
        location = quote(request.path + "/", safe="/!$&'()*+,;=:@-._~").encode("ascii")
        if request.query:
            location += b"?" + request.query
        return error_response(
            301, request.header(b"accept"), extra_headers=[(b"Location", location)]
        )

    def _build(self, file_path: str, st: os.stat_result) -> Entry | None:
        """Representations of a file and its fresh variants; None if it vanished."""
        name = file_path.rsplit("/", 1)[-1]
        media = content_type(name)
        policy = cache_control(name, self.max_age)
        found: list[tuple[str, str, os.stat_result]] = []
        keys: list[_StatKey | None] = []
        for coding, suffix in VARIANTS:
            variant_path = file_path + suffix
            variant = _regular_stat(variant_path)
            keys.append(None if variant is None else _stat_key(variant))
            # A variant older than its source was not made from it: stale, ignored.
            if (
                variant is not None
                and variant.st_mtime_ns >= st.st_mtime_ns
                and self.root.contains(variant_path)
            ):
                found.append((coding, variant_path, variant))
        vary = bool(found)
        reps: dict[str, Representation] = {}
        for coding, rep_path, rep_stat in [(IDENTITY, file_path, st), *found]:
            rep = self._representation(rep_path, rep_stat, coding, media, policy, vary)
            if rep is None:
                if coding == IDENTITY:
                    return None
                continue
            reps[coding] = rep
        return Entry(file_path, reps[IDENTITY], reps, tuple(keys), time.monotonic())

    def _representation(
        self,
        path: str,
        st: os.stat_result,
        coding: str,
        media: bytes,
        policy: bytes,
        vary: bool,
    ) -> Representation | None:
        """One representation; a small file is read now, through the fd it was opened as."""
        body: bytes | None = None
        if st.st_size <= self.max_cached:
            opened = open_regular(path)
            if opened is None:
                return None
            fd, st = opened
            try:
                if st.st_size <= self.max_cached:
                    body = read_file(fd, st.st_size)
            finally:
                os.close(fd)
        cacheable = body is not None
        rep = Representation(
            path, st, coding, media, policy, vary, self.rule_headers, cacheable=cacheable
        )
        if body is not None:
            rep.set_body(body)
            if not self.contents.add(rep, len(body)):
                rep.evict()
                rep.cacheable = False
        return rep


def _unavailable(request: Request, exc: OutOfDescriptors) -> Response:
    """No descriptor to open the file with: the server's trouble, not a missing file."""
    count = _descriptor_log.due()
    if count:
        log.error("static: cannot open %s: %s (%d times since the last such line); raise "
                  "the open files limit (LimitNOFILE=)", request.path, exc, count)  # fmt: skip
    return error_response(503, request.header(b"accept"), extra_headers=_RETRY)


def static_handler(
    rule: RouteRule, config: Config, headers: list[tuple[bytes, bytes]]
) -> StaticHandler:
    """A handler serving files for ``rule``; ``headers`` are the rule's own (they win)."""
    return StaticHandler(rule, config, headers)
