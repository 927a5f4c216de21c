"""``/__bext/``: the first request phase, for loopback peers or the bearer token.

The peer address is the socket's, so these unit tests inject it into the Request; the
end-to-end tests ask a real master from 127.0.0.1 and ::1.
"""

from __future__ import annotations

import asyncio
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bext.admin.endpoints import is_loopback
from bext.config import ConfigError
from bext.config.load import parse_config
from bext.http.body import EMPTY_BODY, RequestBody
from bext.http.message import Request, Response
from bext.shm.counters import NullCounters
from bext.worker.pipeline import Pipeline
from tests.support.server import BextProcess, config

TOKEN = "s3cret-token-0123456789"

SITE = f"""
[admin]
token = "{TOKEN}"

[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "from the site" }}
"""


def pipeline(text: str = SITE) -> Pipeline:
    return Pipeline(parse_config(tomllib.loads(text), base_dir=Path("/srv")))


def ask(
    pipe: Pipeline,
    target: bytes,
    peer: str,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Response:
    request = Request(method, target, headers or [], "1.1", "http", peer, 1, 80, EMPTY_BODY, 0.0)
    result = pipe.handle(request)
    assert isinstance(result, Response)
    return result


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_health_answers_loopback_peers(peer: str) -> None:
    response = ask(pipeline(), b"/__bext/health", peer)
    assert response.status == 200 and response.body == b"ok\n"
    assert (b"Cache-Control", b"no-store") in response.headers


@pytest.mark.parametrize("peer", ["203.0.113.7", "2001:db8::1", "::ffff:203.0.113.7", "bogus"])
def test_other_peers_without_token_get_the_route_table(peer: str) -> None:
    response = ask(pipeline(), b"/__bext/health", peer)
    assert response.status == 200 and response.body == b"from the site"
    # ... and a forwarded header claiming loopback changes nothing
    claims = [(b"x-forwarded-for", b"127.0.0.1"), (b"forwarded", b"for=127.0.0.1")]
    assert ask(pipeline(), b"/__bext/health", peer, headers=claims).body == b"from the site"


def test_bearer_token_opens_the_endpoints_to_any_peer() -> None:
    good = [(b"authorization", f"Bearer {TOKEN}".encode())]
    response = ask(pipeline(), b"/__bext/health", "203.0.113.7", headers=good)
    assert response.status == 200 and response.body == b"ok\n"
    for wrong in (f"Bearer {TOKEN}x", f"bearer{TOKEN}", TOKEN, "Bearer "):
        bad = [(b"authorization", wrong.encode())]
        assert ask(pipeline(), b"/__bext/health", "203.0.113.7", headers=bad).body == (
            b"from the site"
        )


def test_without_a_token_configured_no_header_opens_them() -> None:
    site = SITE.split("[[route_rules]]", 1)[1]
    pipe = pipeline("[[route_rules]]" + site)
    bearer = [(b"authorization", b"Bearer ")]
    assert ask(pipe, b"/__bext/health", "203.0.113.7", headers=bearer).body == b"from the site"


def test_unknown_endpoint_and_wrong_method() -> None:
    pipe = pipeline()
    assert ask(pipe, b"/__bext/nope", "127.0.0.1").status == 404
    response = ask(pipe, b"/__bext/health", "127.0.0.1", method="POST")
    assert response.status == 405 and (b"Allow", b"GET, HEAD") in response.headers


def test_the_normalised_path_decides() -> None:
    """What the phase checks is what routing (and the upstream) would see."""
    pipe = pipeline()
    for target in (b"/__bext/./health", b"//__bext//health", b"/%5F%5Fbext/health",
                   b"http://example.test/__bext/health"):  # fmt: skip
        assert ask(pipe, target, "127.0.0.1").body == b"ok\n", target
    assert ask(pipe, b"/__bext/../health", "127.0.0.1").body == b"from the site"


def test_token_is_checked_with_key_path() -> None:
    for bad, reason in (("short", "at least 16"), ("has space in it 1234", "bearer token")):
        with pytest.raises(ConfigError) as info:
            pipeline(f'[admin]\ntoken = "{bad}"\n')
        assert "admin.token" in str(info.value) and reason in str(info.value)
    with pytest.raises(ConfigError) as info:
        pipeline('[admin]\ntokn = "x"\n')
    assert "admin.tokn" in str(info.value)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.1.2.3")
    assert not is_loopback("10.0.0.1") and not is_loopback("") and not is_loopback("::")


Start = Callable[..., BextProcess]


def test_health_on_a_real_master_from_127_0_0_1_and_ipv6_loopback(start_bext: Start) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this host")
    routes = '[[route_rules]]\npattern = "/**"\nrespond = { status = 200, body = "site" }\n'
    server = start_bext(config(routes, host=["127.0.0.1", "::1"]).replace("'", '"'))
    for host in ("127.0.0.1", "[::1]"):
        r = httpx.get(f"http://{host}:{server.port}/__bext/health")
        assert r.status_code == 200 and r.text == "ok\n", host
        assert r.headers["cache-control"] == "no-store"
        assert httpx.get(f"http://{host}:{server.port}/other").text == "site"


class _Flow:
    """A connection that never needs to pause a body already complete."""

    def pause_body(self) -> None: ...
    def resume_body(self) -> None: ...
    def send_continue(self) -> None: ...


def _json_body(data: bytes) -> RequestBody:
    body = RequestBody(_Flow())
    body.feed(data)
    body.end()
    return body


def test_cache_invalidation_is_an_admin_endpoint_like_the_others(tmp_path: Path) -> None:
    site = f"""
[admin]
token = "{TOKEN}"
[cache]
enabled = true
path = "{tmp_path / "store"}"
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:9"
[[route_rules]]
pattern = "/__bext/**"
respond = {{ status = 200, body = "from the site" }}
[[route_rules]]
pattern = "/**"
proxy = "app"
"""
    pipe = pipeline(site)
    pipe.bind_counters(NullCounters())
    try:

        def post(peer: str, headers: list[tuple[bytes, bytes]]) -> Response:
            request = Request("POST", b"/__bext/cache/invalidate", headers, "1.1", "http", peer,
                              1, 80, _json_body(b'{"tags": ["products"]}'), 0.0)  # fmt: skip
            result = pipe.handle(request)
            if isinstance(result, Response):
                return result

            async def answer() -> Response:
                return await result  # type: ignore[misc]

            return asyncio.run(answer())

        wrong = [(b"authorization", b"Bearer " + TOKEN.encode() + b"x")]
        for headers in ([], wrong):
            outside = post("192.0.2.7", headers)
            assert outside.body == b"from the site"  # just a path of the site
        right = [(b"authorization", b"Bearer " + TOKEN.encode())]
        for peer, headers in (("192.0.2.7", right), ("127.0.0.1", [])):
            answer = post(peer, headers)
            assert answer.status == 200
            assert answer.body == b'{"ok":true,"tags":1,"entries":0,"all":false}\n'
        generation = pipe.cache.tags.generation(b"products") if pipe.cache else -1
        assert generation == 2
    finally:
        pipe.close()
