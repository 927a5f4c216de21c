"""The compression phase: brotli or gzip on the fly, after the handler (nginx ``gzip on``).

What is compressed: a ``200`` response whose Content-Type ``[compression] types`` allows,
with no Content-Encoding already (precompressed files, apps that compress themselves) and
no Content-Range, not marked ``Cache-Control: no-transform``, of ``min_size`` bytes or more
when its size is known (a stream of unknown length is compressed), to a client whose
``Accept-Encoding`` asks for it (``bext.compress.negotiate``).

Only ``200``: a ``206`` is a byte range of the identity body and must stay one; ``201``,
``203``, error pages and the like are small or rare enough that a second code path is not
worth it (nginx compresses 403 and 404 too; bext's own error pages are a few hundred bytes).

Such a response always carries ``Vary: Accept-Encoding``, also when this client gets it
uncompressed, so shared caches keep the variants apart. Responses that are never compressed
(wrong type, too small, already encoded) do not vary and get no Vary from here.

A compressed response loses Content-Length (bytes bodies get the compressed length from the
connection, streams go chunked), Accept-Ranges (ranges of a compressed body are not served)
and digests of the uncompressed bytes; a strong ETag becomes weak (``W/"..."``), as nginx
does, since the compressed bytes are not the ones the strong validator promised. HEAD gets
exactly the headers a GET would; the connection drops the body itself.

Bodies by kind:

* bytes (``respond`` rules, small static files from memory, cache hits): compressed in one
  go, the result kept in a byte-bounded LRU when the response has an ETag or an
  ``identity`` (a cache entry names its body), so a page asked for again is not
  compressed again. Without either it is compressed each time.
* a file (``sendfile`` static files): compressed while read, and kept in the cache when it
  ends if the ETag is strong. Files above ``MAX_BUFFERED_SIZE`` go out uncompressed with
  ``sendfile``: a text file that large is rare (big JSON dumps, source maps), and
  compressing it would cost far more CPU per request than the zero-copy path it replaces.
  Bytes bodies above that size are also left alone, as compressing them in one go would
  hold the worker's event loop for tens of milliseconds.
* a stream (proxied responses): compressed chunk by chunk, each upstream chunk flushed so
  streaming responses still arrive as they are produced. No size cap: the proxied body is
  never held in full.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import partial
from typing import Any

from bext.compress.cache import CompressedCache
from bext.compress.codecs import Codecs
from bext.compress.media import TypeMatcher
from bext.compress.negotiate import negotiate
from bext.compress.stream import BodylessStream, CompressedStream
from bext.config.schema import CompressionConfig
from bext.http.message import Request, Response
from bext.protocol.events import Headers

MAX_BUFFERED_SIZE = 8 * 1024 * 1024
"""Files and bytes bodies larger than this are sent uncompressed."""

_DROP_WHEN_ENCODED = frozenset(
    {
        b"content-length",
        b"content-encoding",  # only an empty one can be present here
        b"accept-ranges",
        b"content-md5",
        b"content-digest",
        b"repr-digest",
    }
)
_LEAVE_ALONE = frozenset({b"content-encoding", b"content-range", b"cache-control"})
_ENCODING_VALUES = {"br": b"br", "gzip": b"gzip"}
_READ = frozenset({b"content-type", b"etag", b"vary"}) | _LEAVE_ALONE
"""The response fields :meth:`Compressor._verdict` reads."""
_NO_VARY = -1
_VARIES = -2
"""Where a response's headers stand on Vary (else: the index of the first Vary field)."""
_UNKNOWN: Any = object()
_MAX_VERDICTS = 4096
_HEAD = "HEAD"


class Compressor:
    def __init__(self, config: CompressionConfig) -> None:
        self.config = config
        self.min_size = max(1, config.min_size)  # an empty body is never worth encoding
        self.types = TypeMatcher(config.types)
        self.codecs = Codecs(config.brotli_quality, config.gzip_level)
        self.cache = CompressedCache(config.memory_cache)
        self._shared: dict[tuple[int, bytes | None], tuple[Response, Response]] = {}
        self._shared_bytes = 0
        self._verdicts: dict[Hashable, tuple[bytes | None, int] | None] = {}
        """:meth:`_verdict` by ``Response.identity`` (cache hits), at most _MAX_VERDICTS."""

    def apply(self, request: Request, response: Response) -> Response:
        """The response to send: ``response`` itself, or a compressed version of it."""
        return self.for_fields(request.method, request.headers, response, request)

    def for_fields(
        self, method: str, fields: Headers, response: Response, request: Request | None = None
    ) -> Response:
        """:meth:`apply` for a request known by its method and header fields; ``request``
        (its host and path name a compressed file) is needed for a file body only.

        A shared ``response`` is never modified: ``respond`` rules and the static memory
        cache share one Response between all requests. For those, the outcome depends only
        on the response and the Accept-Encoding value, so it is remembered (bounded by
        bytes): the hot path of a cached static file becomes one dict lookup here. One
        made for this request alone (a proxied one) may get its header list replaced
        (``Vary``) instead of being copied.
        """
        if not response.shared:
            return self._apply(method, fields, response, request)
        accept_encoding = None
        for name, value in fields:
            if name == b"accept-encoding":
                accept_encoding = value
                break
        key = (id(response), accept_encoding)
        hit = self._shared.get(key)
        if hit is not None and hit[0] is response:  # holding it keeps its id unique
            return hit[1]
        result = self._apply(method, fields, response, request)
        if result is not response:
            if result.stream is not None or result.file is not None:
                return result  # read once, by this request: nothing to remember
            # Remembered and sent to every request like this one: shared as well, so
            # later phases copy it and the HTTP/1.1 writer serialises its head once.
            result.shared = True
        size = len(response.body) + (len(result.body) if result is not response else 0)
        if self._shared_bytes + size > self.config.memory_cache:
            self._shared.clear()
            self._shared_bytes = 0
        self._shared[key] = (response, result)
        self._shared_bytes += size
        return result

    def _apply(
        self, method: str, fields: Headers, response: Response, request: Request | None
    ) -> Response:
        if response.status != 200 or response.tunnel is not None:
            return response
        identity = response.identity
        if identity is None:
            verdict = self._verdict(response)
        else:
            # A cache entry: its headers and length are the same on every hit, and so is
            # the verdict (the headers each hit adds, Age and Cache-Status, are not read).
            verdict = self._verdicts.get(identity, _UNKNOWN)
            if verdict is _UNKNOWN:
                if len(self._verdicts) >= _MAX_VERDICTS:
                    self._verdicts.clear()
                verdict = self._verdicts[identity] = self._verdict(response)
        if verdict is None:
            return response
        etag, vary = verdict
        file = response.file
        encoding = negotiate([v for n, v in fields if n == b"accept-encoding"])
        if encoding is None:
            return _with_headers(response, _with_vary(response.headers, vary))
        headers = _encoded_headers(response.headers, encoding, vary)
        if file is not None:
            assert request is not None, "a file body is compressed for a Request"
            return self._file(request, response, headers, encoding, etag)
        stream = response.stream
        if stream is not None:
            if method == _HEAD:
                return Response(200, headers, stream=BodylessStream(stream))
            make = partial(self.codecs.encoder, encoding, response.content_length)
            return Response(200, headers, stream=CompressedStream(stream, make))
        return self._bytes(response, headers, encoding, etag, vary)

    def _verdict(self, response: Response) -> tuple[bytes | None, int] | None:
        """None when ``response`` is to be sent as it is (already encoded, a range,
        ``no-transform``, a type or size not worth it); else its ETag and where its
        headers stand on Vary (:func:`_with_vary`), found in the same pass."""
        content_type: bytes | None = None
        etag: bytes | None = None
        vary = _NO_VARY
        for index, (name, value) in enumerate(response.headers):
            lowered = name.lower()
            if lowered not in _READ:
                continue  # most fields: one set lookup
            if lowered == b"content-type":
                content_type = value
            elif lowered == b"etag":
                etag = value
            elif lowered == b"vary":
                if vary != _VARIES:
                    vary = _VARIES if _vary_covers(value) else index if vary < 0 else vary
            elif _leave_alone(lowered, value):
                return None
        if not self.types.allows(content_type):
            return None
        file = response.file
        if file is not None:
            size: int | None = file.count
        elif response.stream is not None:
            size = response.content_length
        else:
            size = len(response.body)
        if size is not None:
            if size < self.min_size:
                return None
            if size > MAX_BUFFERED_SIZE and response.stream is None:
                return None
        return (etag, vary)

    def _bytes(
        self, response: Response, headers: Headers, encoding: str, etag: bytes | None, vary: int
    ) -> Response:
        body = response.body
        key: Hashable = None
        compressed: bytes | None = None
        if response.identity is not None:
            # The body has a name (a cache entry): a hit is compressed once, not per request.
            key = (response.identity, encoding)
            compressed = self.cache.get(key)
        elif etag is not None:
            # Content-addressed as well as by ETag: two resources may share an ETag (nginx
            # style "mtime-size" tags do), two different bodies practically never share
            # length and (per-process keyed) hash as well. A shared body (``respond``,
            # the static memory cache) has its hash computed once and remembered.
            key = (etag, encoding, len(body), hash(body))
            compressed = self.cache.get(key)
        if compressed is None:
            compressed = self.codecs.compress(encoding, body)
            if key is not None:
                self.cache.put(key, compressed)
        if len(compressed) >= len(body):
            # Incompressible after all (mislabelled binary): the original is smaller.
            return _with_headers(response, _with_vary(response.headers, vary))
        return Response(200, headers, compressed)

    def _file(
        self,
        request: Request,
        response: Response,
        headers: Headers,
        encoding: str,
        etag: bytes | None,
    ) -> Response:
        file = response.file
        assert file is not None
        key: Hashable = None
        if response.identity is not None and self.cache.max_entry > 0:
            key = (response.identity, encoding, file.offset, file.count)
        elif etag is not None and etag.startswith(b'"') and self.cache.max_entry > 0:
            # A strong ETag promises identical bytes for this resource only, so the key
            # names the resource (host and path) as well as the validator.
            key = (etag, encoding, file.offset, file.count, request.host, request.path)
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                file.close()
                return Response(200, headers, cached)
        if request.method == _HEAD:
            file.close()
            return Response(200, headers, stream=BodylessStream(None))
        stream = CompressedStream(
            file.chunks(),
            partial(self.codecs.encoder, encoding, file.count),
            on_close=file.close,
            keep=None if key is None else partial(self.cache.put, key),
            keep_limit=self.cache.max_entry,
        )
        return Response(200, headers, stream=stream)


def _leave_alone(name: bytes, value: bytes) -> bool:
    """Whether this field (one of ``_LEAVE_ALONE``) rules compression out: the body is
    already encoded, is a range, or must not be transformed."""
    if name == b"content-encoding":
        return bool(value.strip())
    if name == b"content-range":
        return True
    return _no_transform(value)


def _no_transform(cache_control: bytes) -> bool:
    """Whether ``Cache-Control`` says intermediaries must not change the content."""
    for directive in cache_control.split(b","):
        if directive.split(b"=", 1)[0].strip().lower() == b"no-transform":
            return True
    return False


def _vary_covers(value: bytes) -> bool:
    for token in value.split(b","):
        token = token.strip().lower()
        if token == b"accept-encoding" or token == b"*":
            return True
    return False


def _with_vary(headers: Headers, vary: int) -> Headers:
    """``headers`` saying the response varies with Accept-Encoding (the same list if they
    already do: ``vary`` is ``_VARIES``). An existing Vary field (the first, at index
    ``vary``) is extended, not repeated; with none (``_NO_VARY``) one is added."""
    if vary == _VARIES:
        return headers
    if vary == _NO_VARY:
        return [*headers, (b"Vary", b"Accept-Encoding")]
    first = vary
    out = list(headers)
    name, value = out[first]
    value = value.strip()
    out[first] = (name, value + b", Accept-Encoding" if value else b"Accept-Encoding")
    return out


def _weak(etag: bytes) -> bytes:
    return b"W/" + etag if etag.startswith(b'"') else etag


def _encoded_headers(headers: Headers, encoding: str, vary: int) -> Headers:
    """``headers`` rewritten for the body compressed with ``encoding`` (``vary``: as
    :func:`_with_vary` takes it)."""
    out: Headers = []
    for name, value in _with_vary(headers, vary):
        lowered = name.lower()
        if lowered in _DROP_WHEN_ENCODED:
            continue
        if lowered == b"etag":
            value = _weak(value)
        out.append((name, value))
    out.append((b"Content-Encoding", _ENCODING_VALUES[encoding]))
    return out


def _with_headers(response: Response, headers: Headers) -> Response:
    """``response`` with other header fields: itself (changed, unless they are the same
    list) when it is not shared, since it was made for this request alone; a copy of a
    shared one."""
    if headers is response.headers:
        return response
    if not response.shared:
        response.headers = headers
        return response
    return Response(
        response.status,
        headers,
        response.body,
        response.stream,
        response.content_length,
        response.tunnel,
        response.file,
    )
