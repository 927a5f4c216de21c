"""The cache in front of a proxy rule's handler: lookup, then the upstream, then store.

This is the cache's route phase (``cache = true`` on a proxy rule, or ``[cache] enabled``):
it wraps the rule's :class:`~bext.proxy.handler.ProxyHandler` and knows nothing of the HTTP
version. In order, for one request:

1. ``GET``/``HEAD`` (not an Upgrade): look the key up (:mod:`bext.cache.key`, Vary through
   the store); a fresh entry is answered at once, without a coroutine
   (:func:`bext.cache.answer.answer`: ``Age``, ``Cache-Status``, 304 and Range);
2. a stale one is served while a background request refreshes it when
   ``stale-while-revalidate`` or a soft purge allows, and is validated otherwise
   (``If-None-Match``/``If-Modified-Since``; a 304 freshens the stored headers); if the
   upstream fails, ``stale-if-error`` may still serve it;
3. a miss waits for a fetch of the same key already on its way, in this worker or in
   another one (``lock_timeout``), then goes upstream itself: always a full ``GET`` (the
   client's preconditions and Range are answered from the stored response afterwards);
4. the response is stored if RFC 9111 allows (:func:`bext.cache.storable.storability`,
   ``Set-Cookie`` only with ``cache_set_cookie``), with its tags (``Cache-Tag``,
   ``Surrogate-Key``) and their generations from before the fetch;
5. unsafe methods go straight through and a non-error answer removes the stored
   responses of the target URI and its same-origin ``Location``/``Content-Location``
   (§4.4); ``PURGE`` from an admin peer removes one URL (the Varnish convention).

Every answer that went through here carries ``Cache-Status`` (RFC 9211) and never the
edge-only fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import BinaryIO

from bext.cache.answer import PRECONDITION_FIELDS, answer, plain_hit
from bext.cache.capture import CapturedBody
from bext.cache.directives import request_cache_control, response_cache_control
from bext.cache.engine import Found, ResponseCache
from bext.cache.freshness import (
    Outcome,
    current_age,
    evaluate,
    forbids_stale,
    freshness_lifetime,
    initial_age,
    stale_if_error_allowed,
)
from bext.cache.invalidation import SAFE_METHODS, invalidates, invalidation_targets
from bext.cache.key import SEPARATOR, host_key, primary_key, request_key
from bext.cache.memory import Held
from bext.cache.purge import PurgeError, normalise_target
from bext.cache.status import CacheStatus, Fwd
from bext.cache.storable import headers_to_store, storability
from bext.cache.store import EntryMeta, StoredResponse
from bext.cache.tags import EDGE_ONLY_FIELDS, parse_tags
from bext.cache.validation import freshen_headers, matches_not_modified, revalidation_request
from bext.cache.vary import secondary_key
from bext.handlers import Handler, QuickAnswer, QuickTarget
from bext.http.body import EMPTY_BODY
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.http.streams import release
from bext.protocol.events import Headers
from bext.shm.fills import fill_key

log = logging.getLogger("bext")

__all__ = ["CacheHandler"]

POLL_INTERVAL = 0.01
"""How often a miss waiting on another worker's fetch looks again (seconds)."""

_UPSTREAM_ERRORS = frozenset({500, 502, 503, 504})
"""Statuses after which ``stale-if-error`` may serve a stored response (RFC 5861 §4)."""

INLINE_BODY = 256 * 1024
"""A streamed body announced at most this long is read whole before the client is answered
(it is stored inline, and the answer comes from the stored entry, as a hit's would)."""

_HIT = CacheStatus(hit=True, ttl=0)
"""A plain hit: :func:`answer` writes its ``ttl`` itself (``bext;hit;ttl=N``)."""

_JSON = (b"Content-Type", b"application/json")
_NO_STORE = (b"Cache-Control", b"no-store")


class CacheHandler:
    """A proxy rule's handler with the response cache in front of it."""

    __slots__ = ("allowed", "cache", "inner", "set_cookie")

    def __init__(
        self,
        cache: ResponseCache,
        inner: Handler,
        *,
        set_cookie: bool = False,
        allowed: Callable[[Request], bool] = lambda request: False,
    ) -> None:
        self.cache = cache
        self.inner = inner
        self.set_cookie = set_cookie
        """``cache_set_cookie``: store responses that set cookies."""
        self.allowed = allowed
        """Whether a request may purge (the admin endpoints' rule: loopback or token)."""

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        cache = self.cache
        if not cache.ready:
            return self.inner(request)
        method = request.method
        if method == "GET" or method == "HEAD":
            if request.header(b"upgrade") is None:
                return self._lookup(request)
            return self.inner(request)  # a WebSocket handshake: nothing to cache
        if method == "PURGE" and self.allowed(request):
            return self._purge(request)
        cache.counters.cache("bypass")
        request.notes.cache = "BYPASS"
        return self._bypass(request)

    # -- lookups --------------------------------------------------------------------------

    def _lookup(self, request: Request) -> Response | Awaitable[Response]:
        key = request_key(request)
        found = self.cache.lookup(key, request.headers)
        if found is None:
            if _only_if_cached(request):
                return self._unsatisfied(request)
            return self._miss(request, key, Fwd.URI_MISS)
        return self._serve(request, key, found)

    # -- the quick lane ---------------------------------------------------------------------

    def quick_answer(self, target: QuickTarget) -> QuickAnswer:
        """:data:`~bext.handlers.QuickAnswers`: :meth:`quick_hit` for the target's key."""
        key = primary_key(target.path, target.target, target.query, target.host, target.scheme)
        return partial(self.quick_hit, key)

    def quick_hit(self, key: bytes, method: str, headers: Headers) -> Response | None:
        """:meth:`__call__`'s answer when it is a plain fresh hit of an entry held in
        memory, to a GET or HEAD without directives, preconditions, ``Range`` or
        ``Upgrade``; counted as one. Anything else is None: the full path looks again."""
        cache = self.cache
        if (method != "GET" and method != "HEAD") or not cache.ready:
            return None
        for name, _ in headers:
            if name in _NOT_QUICK:
                return None
        found = cache.lookup(key, headers)
        if found is None:
            return None
        held = found.held
        stored = held.stored
        if stored.body is None:  # a file-backed entry: the full path sends it
            stored.close()
            return None
        age, remaining = _age(held)
        if remaining <= 0 or not held.plain or found.soft_purged:
            return None
        cache.counters.cache("hit")
        return plain_hit(stored, age, held.client_headers, int(remaining))

    def _serve(
        self, request: Request, key: bytes, found: Found, collapsed: bool = False
    ) -> Response | Awaitable[Response]:
        """Answer from a stored response, or go on to validate or refetch it."""
        cache = self.cache
        held = found.held
        stored = held.stored
        age, remaining = _age(held)
        if (
            remaining > 0
            and held.plain
            and not found.soft_purged
            and not _has_directives(request.headers)
        ):
            outcome = Outcome.FRESH  # the common hit: nothing in the request to weigh
        else:
            decision = evaluate(request.headers, stored.headers, lifetime=held.lifetime, age=age)
            outcome = decision.outcome
        if found.soft_purged and outcome in (Outcome.FRESH, Outcome.STALE_ALLOWED):
            stale_forbidden = forbids_stale(response_cache_control(stored.headers))
            outcome = Outcome.MUST_VALIDATE if stale_forbidden else Outcome.STALE_WHILE_REVALIDATE
        ttl = int(remaining)
        if outcome is Outcome.FRESH or outcome is Outcome.STALE_ALLOWED:
            cache.counters.cache("hit")
            request.notes.cache = "HIT"
            if collapsed:
                status = CacheStatus(hit=True, ttl=ttl, collapsed=True)
                return answer(request, stored, age, status, held.client_headers)
            return answer(request, stored, age, _HIT, held.client_headers, ttl)
        if outcome is Outcome.STALE_WHILE_REVALIDATE:
            self._refresh_later(request, key, stored.headers, stored.digest)
            cache.counters.cache("stale")
            request.notes.cache = "STALE"
            detail = "soft-purged" if found.soft_purged else "stale-while-revalidate"
            status = CacheStatus(hit=True, ttl=ttl, detail=detail)
            return answer(request, stored, age, status, held.client_headers)
        if outcome is Outcome.GATEWAY_TIMEOUT:
            stored.close()
            return self._unsatisfied(request)
        if outcome is Outcome.UNUSABLE:
            stored.close()
            return self._miss(request, key, Fwd.REQUEST)
        # Fresh but the request's directives (no-cache, max-age) asked for validation:
        # RFC 9211 calls that fwd=request; otherwise the entry was stale.
        return self._validate(request, key, stored, Fwd.REQUEST if remaining > 0 else Fwd.STALE)

    def _unsatisfied(self, request: Request) -> Response:
        """``only-if-cached`` with nothing usable stored: 504 (RFC 9111 §5.2.1.7)."""
        self.cache.counters.cache("miss")
        request.notes.cache = "MISS"
        response = error_response(504, request.header(b"accept"))
        response.headers.append((b"Cache-Status", CacheStatus(fwd=Fwd.MISS).serialise()))
        return response

    # -- misses ---------------------------------------------------------------------------

    async def _miss(self, request: Request, key: bytes, fwd: Fwd) -> Response:
        """Go upstream for ``key``, unless another fetch of it is on its way already: then
        wait for that one (``lock_timeout``) and answer from what it stored."""
        cache = self.cache
        release_fill: Callable[[], None] | None = None
        if fwd is Fwd.URI_MISS:
            # Twice at most: another worker may claim the key between our look at the fill
            # table and our own claim; then we wait for it too rather than fetch as well.
            for _ in range(2):
                if await self._wait_for_fill(key):
                    found = cache.lookup(key, request.headers)
                    if found is not None:
                        served = self._serve(request, key, found, collapsed=True)
                        return served if isinstance(served, Response) else await served
                release_fill, claimed = self._claim(key)
                if claimed:
                    break
                release_fill()
                release_fill = None
        if release_fill is None:
            release_fill, _ = self._claim(key)
        cache.counters.cache("miss")
        request.notes.cache = "MISS"
        try:
            fetch = _fetch_request(request, revalidation_request(request.headers, []))
            sequence = cache.tags.sequence()
            request_time = time.time()
            response = await _call(self.inner, fetch)
            status = CacheStatus(fwd=fwd, fwd_status=response.status)
            return await self._store(request, key, fetch, response, request_time, sequence,
                                     status, release_fill)  # fmt: skip
        except BaseException:
            release_fill()
            raise

    async def _wait_for_fill(self, key: bytes) -> bool:
        """Wait while another request fetches ``key`` (this worker's, or another's seen
        through the shared fill table); True if there was one to wait for."""
        cache = self.cache
        timeout = cache.config.lock_timeout
        pending = cache.filling.get(key)
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), timeout)
            return True
        fills = cache.fills
        if fills is None or not fills.busy(fill_key(key)):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        shared = fill_key(key)
        while fills.busy(shared) and loop.time() < deadline:
            await asyncio.sleep(POLL_INTERVAL)
        return True

    def _claim(self, key: bytes) -> tuple[Callable[[], None], bool]:
        """Announce a fetch of ``key`` (to this worker's other misses and, through the fill
        table, to the other workers); returns what ends the announcement (idempotent), and
        False if another worker's claim on the key came first."""
        cache = self.cache
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cache.filling[key] = future
        fills = cache.fills
        shared = fill_key(key)
        claimed = fills is not None and fills.claim(shared, cache.config.lock_timeout)
        first = fills is None or claimed

        def done() -> None:
            if cache.filling.get(key) is future:
                del cache.filling[key]
            if not future.done():
                future.set_result(None)
            if claimed and fills is not None:
                fills.release(shared)

        return done, first

    # -- storing --------------------------------------------------------------------------

    async def _store(
        self,
        request: Request,
        key: bytes,
        fetch: Request,
        response: Response,
        request_time: float,
        sequence: int,
        status: CacheStatus,
        release_fill: Callable[[], None],
    ) -> Response:
        """Store ``response`` if it may be, and answer the client: from the stored entry
        for a small body (read whole first, as it is stored inline anyway), relaying (and
        copying) a larger streamed one."""
        cache = self.cache
        config = cache.config
        response_time = time.time()
        verdict = storability(
            "GET",
            response.status,
            fetch.headers,
            response.headers,
            allow_set_cookie=self.set_cookie,
            default_ttl=config.default_ttl,
            response_time=response_time,
        )
        length = response.content_length
        too_big = length is not None and length > config.max_object_size
        if (
            not verdict.storable
            or too_big
            or response.tunnel is not None
            or response.file is not None
            or cache.tags.sequence() != sequence  # a purge ran meanwhile: not stamped
        ):
            release_fill()
            return _relay(request, response, status)
        stored_headers = headers_to_store(response.headers)
        meta = EntryMeta(
            status=response.status,
            headers=stored_headers,
            request_time=request_time,
            response_time=response_time,
            tags=(tags := parse_tags(response.headers).tags),
            tag_generations=cache.stamp(tags),
        )
        secondary = secondary_key(response.headers, fetch.headers)
        if response.stream is not None and length is not None and length <= INLINE_BODY:
            try:
                body = b"".join([chunk async for chunk in response.stream])
            except Exception as exc:
                log.warning("cache: the upstream's body broke off (%s); not stored", exc)
                release_fill()
                return error_response(502, request.header(b"accept"))
            finally:
                await release(response)
            if len(body) != length:
                release_fill()
                return error_response(502, request.header(b"accept"))
            response = Response(response.status, response.headers, body)
        if response.stream is None:
            body = response.body
            saved = cache.put(key, secondary, meta, body)
            release_fill()
            if not saved:
                return _relay(request, response, status)
            entry = _entry(key, meta, secondary.digest(), body)
            age = initial_age(stored_headers, request_time=request_time,
                              response_time=response_time)  # fmt: skip
            return answer(request, entry, age, _with(status, stored=True))

        def complete(file: BinaryIO) -> None:
            try:
                cache.put(key, secondary, meta, file)
            finally:
                release_fill()

        response.stream = CapturedBody(
            response.stream, cache.path, config.max_object_size, complete, release_fill
        )
        return _relay(request, response, status)

    # -- validation -----------------------------------------------------------------------

    async def _validate(
        self, request: Request, key: bytes, stored: StoredResponse, fwd: Fwd
    ) -> Response:
        """Ask the upstream whether the stored response still holds (RFC 9111 §4.3)."""
        cache = self.cache
        release_fill, _ = self._claim(key)
        try:
            fetch = _fetch_request(request, revalidation_request(request.headers, stored.headers))
            sequence = cache.tags.sequence()
            request_time = time.time()
            response = await _call(self.inner, fetch)
            fresh = self._freshened(key, stored, response, request_time, sequence)
            if fresh is not None:
                release_fill()
                cache.counters.cache("revalidated")
                request.notes.cache = "REVALIDATED"
                status = CacheStatus(fwd=fwd, fwd_status=304)
                return answer(request, fresh, fresh_age(fresh), status)
            if response.status in _UPSTREAM_ERRORS and self._may_serve_stale(request, stored):
                release_fill()
                await release(response)
                cache.counters.cache("stale")
                request.notes.cache = "STALE"
                _, age = _lifetime_and_age(stored, cache.config.default_ttl, time.time())
                status = CacheStatus(fwd=Fwd.STALE, fwd_status=response.status,
                                     detail="stale-if-error")  # fmt: skip
                return answer(request, stored, age, status)
            stored.close()
            cache.counters.cache("miss")
            request.notes.cache = "MISS"
            status = CacheStatus(fwd=fwd, fwd_status=response.status)
            return await self._store(request, key, fetch, response, request_time, sequence,
                                     status, release_fill)  # fmt: skip
        except BaseException:
            stored.close()
            release_fill()
            raise

    def _freshened(
        self,
        key: bytes,
        stored: StoredResponse,
        response: Response,
        request_time: float,
        sequence: int,
    ) -> StoredResponse | None:
        """The stored response updated from a 304 that selects it, or None."""
        if response.status != 304 or not matches_not_modified(stored.headers, response.headers):
            return None
        stored = copy.copy(stored)  # it may be the memory tier's, shared with other requests
        cache = self.cache
        response_time = time.time()
        headers = freshen_headers(stored.headers, response.headers)
        if cache.tags.sequence() == sequence:
            stamp = cache.stamp(stored.tags)
            cache.update_headers(key, stored.digest, headers, request_time, response_time, stamp)
        stored.headers = headers
        stored.request_time = request_time
        stored.response_time = response_time
        return stored

    def _may_serve_stale(self, request: Request, stored: StoredResponse) -> bool:
        lifetime, age = _lifetime_and_age(stored, self.cache.config.default_ttl, time.time())
        return stale_if_error_allowed(request.headers, stored.headers, lifetime=lifetime, age=age)

    def _refresh_later(self, request: Request, key: bytes, headers: Headers, digest: str) -> None:
        """Refresh a stale entry in the background (stale-while-revalidate, soft purge),
        unless a fetch of it is on its way already, here or in another worker."""
        cache = self.cache
        fills = cache.fills
        if key in cache.filling or (fills is not None and fills.busy(fill_key(key))):
            return
        release_fill, claimed = self._claim(key)
        if not claimed:
            release_fill()  # another worker refreshes it
            return
        fetch = _fetch_request(request, revalidation_request(request.headers, headers))
        task = asyncio.get_running_loop().create_task(self._refresh(fetch, key, release_fill))
        cache.background.add(task)
        task.add_done_callback(cache.background.discard)

    async def _refresh(self, fetch: Request, key: bytes, release_fill: Callable[[], None]) -> None:
        cache = self.cache
        try:
            sequence = cache.tags.sequence()
            request_time = time.time()
            response = await _call(self.inner, fetch)
            found = cache.lookup(key, fetch.headers)
            if found is not None:
                fresh = self._freshened(key, found.stored, response, request_time, sequence)
                found.stored.close()
                if fresh is not None:
                    cache.counters.cache("revalidated")
                    return
            if response.status == 304:
                return  # it no longer matches what is stored: the next miss refetches
            relayed = await self._store(fetch, key, fetch, response, request_time, sequence,
                                        CacheStatus(fwd=Fwd.STALE), release_fill)  # fmt: skip
            try:
                if relayed.stream is not None:
                    async for _ in relayed.stream:
                        pass  # the capture stores it at the end
            finally:
                await release(relayed)
        except Exception:
            log.exception("cache: refreshing %r in the background failed", key)
        finally:
            release_fill()

    # -- everything else ----------------------------------------------------------------

    async def _bypass(self, request: Request) -> Response:
        """A method the cache does not serve: forwarded; unsafe ones invalidate (§4.4)."""
        response = await _call(self.inner, request)
        if request.method not in SAFE_METHODS and invalidates(request.method, response.status):
            self._invalidate_after(request, response.headers)
        return _relay(request, response, CacheStatus(fwd=Fwd.METHOD))

    def _invalidate_after(self, request: Request, response_headers: Headers) -> None:
        cache = self.cache
        host = host_key(request.host, request.scheme)
        try:
            cache.remove(_url_prefix(request))
            target = f"{request.scheme}://{request.host or 'localhost'}{request.path}"
            uris = invalidation_targets(request.method, 200, target, response_headers)[1:]
            for uri in uris:
                try:
                    _, path = normalise_target(uri)
                except PurgeError:
                    continue
                encoded = path.encode("utf-8", "surrogateescape")
                cache.remove(encoded + SEPARATOR + host + SEPARATOR)
        except Exception:
            log.exception("cache: invalidation after %s %s failed", request.method, request.path)

    def _purge(self, request: Request) -> Response:
        """``PURGE`` on a URL: remove its stored responses (all variants, both schemes)."""
        try:
            removed = self.cache.remove(_url_prefix(request))
        except Exception:
            log.exception("cache: PURGE %s failed", request.path)
            return error_response(500, request.header(b"accept"))
        body = b'{"purged":%d}\n' % removed
        return Response(200, [_JSON, _NO_STORE], body)


def _url_prefix(request: Request) -> bytes:
    """The key prefix of every entry of the request's URL (both schemes, all variants)."""
    return request_key(request).rsplit(SEPARATOR, 1)[0] + SEPARATOR


_DIRECTIVE_FIELDS = frozenset({b"cache-control", b"pragma", b"authorization"})
"""Request fields that can change what a fresh stored response may do (RFC 9111 §5.2.1,
§5.4, §3.5)."""

_NOT_QUICK = _DIRECTIVE_FIELDS | PRECONDITION_FIELDS | {b"upgrade"}
"""Request fields that send a request to the full path (:meth:`CacheHandler.quick_hit`)."""


def _age(held: Held) -> tuple[float, float]:
    """A held response's current age and what remains of its freshness lifetime."""
    age = held.initial_age + max(0.0, time.time() - held.stored.response_time)
    return age, held.lifetime - age


def _has_directives(headers: Headers) -> bool:
    return any(name in _DIRECTIVE_FIELDS for name, _ in headers)


def fresh_age(stored: StoredResponse) -> float:
    """The age of a response just received or validated."""
    return initial_age(
        stored.headers, request_time=stored.request_time, response_time=stored.response_time
    )


def _lifetime_and_age(
    stored: StoredResponse, default_ttl: float, now: float
) -> tuple[float, float]:
    lifetime = freshness_lifetime(
        stored.status, stored.headers, response_time=stored.response_time, default_ttl=default_ttl
    ).seconds
    age = current_age(fresh_age(stored), response_time=stored.response_time, now=now)
    return lifetime, age


def _only_if_cached(request: Request) -> bool:
    return (
        request.header(b"cache-control") is not None
        and request_cache_control(request.headers).only_if_cached
    )


def _fetch_request(request: Request, headers: Headers) -> Request:
    """The request the cache sends upstream for ``request``: a ``GET`` (HEAD is fetched
    whole, as nginx's ``proxy_cache_convert_head``) with ``headers``; the same notes."""
    fetch = Request(
        "GET",
        request.target,
        headers,
        request.http_version,
        request.scheme,
        request.client_addr,
        request.client_port,
        request.server_port,
        EMPTY_BODY,
        request.start_time,
        request.host,
    )
    fetch.path = request.path
    fetch.query = request.query
    fetch.route = request.route
    fetch._notes = request.notes
    return fetch


def _entry(key: bytes, meta: EntryMeta, digest: str, body: bytes) -> StoredResponse:
    """The stored form of a response just stored, to answer from it."""
    return StoredResponse(
        primary=key,
        digest=digest,
        status=meta.status,
        headers=meta.headers,
        request_time=meta.request_time,
        response_time=meta.response_time,
        tags=meta.tags,
        tag_generations=meta.tag_generations,
        secondary=secondary_key([], []),
        length=len(body),
        body=body,
    )


def _with(status: CacheStatus, *, stored: bool) -> CacheStatus:
    return CacheStatus(fwd=status.fwd, fwd_status=status.fwd_status, stored=stored,
                       collapsed=status.collapsed, detail=status.detail)  # fmt: skip


def _relay(request: Request, response: Response, status: CacheStatus) -> Response:
    """The upstream's response for the client: edge-only fields out, Cache-Status in."""
    headers = [(n, v) for n, v in response.headers if n.lower() not in EDGE_ONLY_FIELDS]
    headers.append((b"Cache-Status", status.serialise()))
    response.headers = headers
    return response


async def _call(handler: Handler, request: Request) -> Response:
    result = handler(request)
    return result if isinstance(result, Response) else await result
