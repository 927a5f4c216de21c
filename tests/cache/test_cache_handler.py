"""The cache route phase without sockets: a scripted upstream handler behind
:class:`~bext.cache.handler.CacheHandler`, a real LMDB store in a temporary directory.

Each test states one rule of RFC 9111 / RFC 5861 / RFC 9211 as the handler applies it;
the end-to-end tests (real master, workers, Gunicorn + Django) are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bext.cache.engine import ResponseCache
from bext.cache.handler import CacheHandler
from bext.cache.purge import parse_body
from bext.config.schema import CacheConfig
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.http.streams import release
from bext.routing.path import normalize_path, split_target
from bext.shm.counters import NullCounters

Headers = list[tuple[bytes, bytes]]


class Upstream:
    """The inner handler: answers from ``script`` and records what it was asked."""

    def __init__(self, script: Callable[[Request], Response]) -> None:
        self.script = script
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        await asyncio.sleep(0)
        return self.script(request)


def request(target: str = "/page", method: str = "GET", headers: Headers | None = None) -> Request:
    raw = target.encode()
    fields = [(b"host", b"example.com"), *(headers or [])]
    req = Request(method, raw, fields, "1.1", "https", "127.0.0.1", 5000, 443, EMPTY_BODY, 0.0,
                  "example.com")  # fmt: skip
    path, req.query = split_target(raw)
    req.path = normalize_path(path)
    return req


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    engine = ResponseCache(CacheConfig(enabled=True, path=tmp_path / "cache", max_size=64 << 20))
    engine.bind(NullCounters(), os.getpid())
    yield engine
    engine.close()


def run(handler: CacheHandler, req: Request) -> Response:
    async def go() -> Response:
        result = handler(req)
        response = result if isinstance(result, Response) else await result
        if response.stream is not None:
            body = b"".join([chunk async for chunk in response.stream])
            await release(response)
            response.body = body
            response.stream = None
        if response.file is not None:
            response.body = os.pread(response.file.fd, response.file.count, response.file.offset)
            response.file.close()
            response.file = None
        return response

    return asyncio.run(go())


def status_of(response: Response) -> str:
    return dict(response.headers).get(b"Cache-Status", b"").decode()


def header(response: Response, name: bytes) -> bytes | None:
    return next((v for n, v in response.headers if n.lower() == name), None)


def counting(*fields: tuple[bytes, bytes], status: int = 200) -> Upstream:
    made = [0]

    def script(req: Request) -> Response:
        made[0] += 1
        return Response(status, list(fields), b"body %d" % made[0])

    return Upstream(script)


PUBLIC = (b"Cache-Control", b"public, max-age=60")


def test_a_fresh_response_is_served_from_the_store(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC, (b"Content-Type", b"text/html"))
    handler = CacheHandler(cache, upstream)
    first = run(handler, request())
    assert first.body == b"body 1"
    assert status_of(first) == "bext;fwd=uri-miss;fwd-status=200;stored"
    second = run(handler, request())
    assert second.body == b"body 1" and len(upstream.requests) == 1
    assert status_of(second).startswith("bext;hit;ttl=")
    assert header(second, b"age") is not None


def test_set_cookie_is_never_stored_unless_the_rule_says_so(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC, (b"Set-Cookie", b"sessionid=abc"))
    handler = CacheHandler(cache, upstream)
    run(handler, request())
    run(handler, request())
    assert len(upstream.requests) == 2
    allowing = CacheHandler(cache, upstream, set_cookie=True)
    run(allowing, request("/other"))
    assert status_of(run(allowing, request("/other"))).startswith("bext;hit")


def test_vary_keeps_variants_apart(cache: ResponseCache) -> None:
    def script(req: Request) -> Response:
        language = req.header(b"accept-language") or b"none"
        return Response(200, [PUBLIC, (b"Vary", b"Accept-Language")], b"lang " + language)

    handler = CacheHandler(cache, Upstream(script))
    fr = [(b"accept-language", b"fr")]
    de = [(b"accept-language", b"de")]
    assert run(handler, request(headers=fr)).body == b"lang fr"
    assert run(handler, request(headers=de)).body == b"lang de"
    assert run(handler, request(headers=fr)).body == b"lang fr"
    assert status_of(run(handler, request(headers=de))).startswith("bext;hit")


def test_authorization_requests_never_get_a_stored_private_answer(cache: ResponseCache) -> None:
    upstream = counting((b"Cache-Control", b"max-age=60"))
    handler = CacheHandler(cache, upstream)
    auth = [(b"authorization", b"Basic YTpi")]
    run(handler, request(headers=auth))
    run(handler, request(headers=auth))
    assert len(upstream.requests) == 2  # §3.5: not stored without public/s-maxage


def test_edge_fields_are_stripped_and_tags_invalidate(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC, (b"Cache-Tag", b"products, p:1"), (b"Surrogate-Key", b"shop"))
    handler = CacheHandler(cache, upstream)
    first = run(handler, request())
    assert header(first, b"cache-tag") is None and header(first, b"surrogate-key") is None
    assert run(handler, request()).body == b"body 1"
    cache.purge(parse_body(b'{"tags": ["shop"]}'))
    assert run(handler, request()).body == b"body 2"
    assert run(handler, request()).body == b"body 2"


def test_soft_purge_serves_stale_once_then_the_refreshed_entry(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC, (b"Cache-Tag", b"products"))
    handler = CacheHandler(cache, upstream)

    async def scenario() -> list[tuple[bytes, str]]:
        seen = []
        for step in range(3):
            if step == 1:
                cache.purge(parse_body(b'{"tags": ["products"], "soft": true}'))
            result = handler(request())
            response = result if isinstance(result, Response) else await result
            seen.append((response.body, status_of(response)))
            await asyncio.gather(*cache.background)
        return seen

    seen = asyncio.run(scenario())
    assert seen[0][0] == b"body 1"
    assert seen[1] == (b"body 1", seen[1][1]) and 'detail="soft-purged"' in seen[1][1]
    assert seen[2][0] == b"body 2" and seen[2][1].startswith("bext;hit")


def test_stale_response_is_validated_and_freshened_by_a_304(cache: ResponseCache) -> None:
    def script(req: Request) -> Response:
        if req.header(b"if-none-match") == b'"v1"':
            return Response(304, [(b"ETag", b'"v1"'), (b"Cache-Control", b"max-age=60")])
        return Response(200, [(b"ETag", b'"v1"'), (b"Cache-Control", b"max-age=0")], b"v1")

    upstream = Upstream(script)
    handler = CacheHandler(cache, upstream)
    assert run(handler, request()).body == b"v1"
    validated = run(handler, request())
    assert validated.body == b"v1" and validated.status == 200
    assert status_of(validated) == "bext;fwd=stale;fwd-status=304"
    assert upstream.requests[1].header(b"if-none-match") == b'"v1"'
    assert status_of(run(handler, request())).startswith("bext;hit")  # now max-age=60
    assert len(upstream.requests) == 2


def test_stale_if_error_serves_the_stored_response(cache: ResponseCache) -> None:
    failing = [False]

    def script(req: Request) -> Response:
        if failing[0]:
            return Response(502, [], b"bad gateway")
        return Response(200, [(b"Cache-Control", b"max-age=0, stale-if-error=600")], b"ok")

    handler = CacheHandler(cache, Upstream(script))
    run(handler, request())
    failing[0] = True
    stale = run(handler, request())
    assert stale.status == 200 and stale.body == b"ok"
    assert 'detail="stale-if-error"' in status_of(stale)


def test_only_if_cached_without_an_entry_is_504(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC)
    handler = CacheHandler(cache, upstream)
    answer = run(handler, request(headers=[(b"cache-control", b"only-if-cached")]))
    assert answer.status == 504 and not upstream.requests


def test_client_preconditions_and_ranges_come_from_the_store(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC, (b"ETag", b'"e1"'))
    handler = CacheHandler(cache, upstream)
    run(handler, request())
    assert run(handler, request(headers=[(b"if-none-match", b'"e1"')])).status == 304
    ranged = run(handler, request(headers=[(b"range", b"bytes=0-3")]))
    assert ranged.status == 206 and ranged.body == b"body"
    assert header(ranged, b"content-range") == b"bytes 0-3/6"
    assert len(upstream.requests) == 1
    # The miss itself went upstream without the client's preconditions.
    run(handler, request("/x", headers=[(b"if-none-match", b'"e1"'), (b"range", b"bytes=0-1")]))
    assert upstream.requests[-1].header(b"if-none-match") is None
    assert upstream.requests[-1].header(b"range") is None


def test_unsafe_methods_invalidate_the_target(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC)
    handler = CacheHandler(cache, upstream)
    run(handler, request())
    posted = run(handler, request(method="POST"))
    assert status_of(posted) == "bext;fwd=method"
    assert run(handler, request()).body == b"body 3"  # 1 stored, 2 the POST, 3 refetched


def test_purge_method_needs_an_admin_peer(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC)
    refused = CacheHandler(cache, upstream)
    run(refused, request())
    run(refused, request(method="PURGE"))  # not allowed: forwarded like any method
    assert len(upstream.requests) == 2
    allowed = CacheHandler(cache, upstream, allowed=lambda request: True)
    purged = run(allowed, request(method="PURGE"))
    assert purged.status == 200 and purged.body == b'{"purged":0}\n'  # the POST removed it
    run(allowed, request())
    assert run(allowed, request(method="PURGE")).body == b'{"purged":1}\n'


def test_head_is_fetched_as_get_and_answered_without_body(cache: ResponseCache) -> None:
    upstream = counting(PUBLIC)
    handler = CacheHandler(cache, upstream)
    head = run(handler, request(method="HEAD"))
    assert upstream.requests[0].method == "GET"
    assert head.content_length == 6  # the exchange sends the head of this, without the body
    assert run(handler, request()).body == b"body 1"


def test_concurrent_misses_in_one_worker_go_upstream_once(cache: ResponseCache) -> None:
    def script(req: Request) -> Response:
        return Response(200, [PUBLIC], b"shared")

    upstream = Upstream(script)
    handler = CacheHandler(cache, upstream)

    async def many() -> list[Response]:
        async def one() -> Response:
            result = handler(request())
            return result if isinstance(result, Response) else await result

        return await asyncio.gather(*(one() for _ in range(20)))

    answers = asyncio.run(many())
    assert len(upstream.requests) == 1
    assert all(a.body == b"shared" for a in answers)
    assert sum("collapsed" in status_of(a) for a in answers) == 19


def streaming() -> Upstream:
    """Answers 400,000 bytes in four pieces, as a streamed body (over the inline size)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 100_000

    def script(req: Request) -> Response:
        return Response(200, [PUBLIC], stream=chunks(), content_length=400_000)

    return Upstream(script)


def test_a_streamed_body_is_stored_when_it_ends(cache: ResponseCache) -> None:
    upstream = streaming()
    handler = CacheHandler(cache, upstream)
    assert len(run(handler, request()).body) == 400_000
    hit = run(handler, request())
    assert len(hit.body) == 400_000 and status_of(hit).startswith("bext;hit")
    assert len(upstream.requests) == 1


def test_an_abandoned_stream_stores_nothing(cache: ResponseCache) -> None:
    upstream = streaming()
    handler = CacheHandler(cache, upstream)

    async def abandon() -> None:
        result = handler(request())
        response = result if isinstance(result, Response) else await result
        assert response.stream is not None
        await response.stream.__anext__()
        await release(response)  # the client went away after one piece

    asyncio.run(abandon())
    assert not cache.filling
    run(handler, request())
    assert len(upstream.requests) == 2
    assert list((cache.path).glob("tmp*")) == []
