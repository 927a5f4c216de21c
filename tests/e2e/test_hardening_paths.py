"""Issue 14, items 2 and 10 through a real master: what routing sees is what the app gets.

* An encoded slash: the app server behind bext decodes ``%2F`` to ``/`` in ``PATH_INFO``,
  so ``/private%2fx`` must meet the ``/private/**`` deny rule, over HTTP/1.1 (origin and
  absolute form) and HTTP/2, and never reach the upstream; the raw target still goes
  upstream unchanged when it is routed there. ``server.reject_encoded_slash`` answers 400.
* Header names with ``_`` are dropped on the way upstream unless
  ``server.underscores_in_headers`` (``X_Forwarded_Proto`` must not pass for the
  ``X-Forwarded-Proto`` bext sets).
* A method bext does not know is proxied like any other; the static handler answers 405.

Two masters serve the module: one with the defaults (the httptools engine), one with both
settings turned on (and the h11 engine). The upstream is a recording fake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.h2.h2client import RawH2
from tests.support.fake_upstream import FakeUpstream
from tests.support.rawhttp import RawConnection, RawResponse, exchange
from tests.support.server import BextProcess, config


@dataclass
class Site:
    server: BextProcess
    upstream: FakeUpstream

    def get(self, target: bytes, method: bytes = b"GET", extra: bytes = b"") -> RawResponse:
        return exchange(
            self.server.port, method + b" " + target + b" HTTP/1.1\r\nHost: a.test\r\n" + extra
            + b"Connection: close\r\n\r\n",
        )  # fmt: skip

    def h2(self, path: bytes, method: bytes = b"GET") -> tuple[int | None, int | None]:
        """(status, reset code) of one HTTP/2 request (h2c, prior knowledge)."""
        with RawH2(self.server.port) as conn:
            conn.request(1, path, method=method, authority=b"a.test")
            reply = conn.response(1)
            return (reply.status if reply.headers else None), reply.reset

    def seen(self) -> list[bytes]:
        """The request lines the upstream received."""
        return [head.split(b"\r\n", 1)[0] for head in self.upstream.requests]

    def heads(self) -> list[bytes]:
        return list(self.upstream.requests)


def _site(workdir: Path, **server: object) -> Iterator[Site]:
    upstream = FakeUpstream().start()
    static = workdir / "static"
    (static / "a").mkdir(parents=True)
    (static / "a/b.txt").write_text("file")
    routes = f"""
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{upstream.port}"

[[route_rules]]
pattern = "/private/**"
respond = {{ status = 403, body = "denied" }}

[[route_rules]]
pattern = "/static/**"
render = "static"
root = "{static}"

[[route_rules]]
pattern = "/**"
proxy = "app"
"""
    (workdir / "bext").mkdir()
    server = BextProcess(workdir / "bext", config(routes, workers=1, **server))
    try:
        server.start()
        yield Site(server, upstream)
    finally:
        server.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from _site(tmp_path_factory.mktemp("defaults"))


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from _site(
        tmp_path_factory.mktemp("strict"),
        reject_encoded_slash=True,
        underscores_in_headers=True,
        http1_engine="h11",
    )


# -- item 2: encoded slashes ----------------------------------------------------------------

DENIED = [
    b"/private%2fx",
    b"/private%2Fx",
    b"/private%2f",
    b"/private/a%2fb",
    b"/%2fprivate%2fx",
]


@pytest.mark.parametrize("target", DENIED)
def test_encoded_slash_meets_the_deny_rule(site: Site, target: bytes) -> None:
    before = len(site.seen())
    response = site.get(target)
    assert (response.status, response.body) == (403, b"denied")
    absolute = site.get(b"http://a.test:%d" % site.server.port + target)
    assert (absolute.status, absolute.body) == (403, b"denied")
    assert site.h2(target) == (403, None)
    assert len(site.seen()) == before  # nothing reached the upstream


def test_encoded_slash_elsewhere_goes_upstream_as_sent(site: Site) -> None:
    assert site.get(b"/pub%2fx?q=%2F").status == 200
    assert site.get(b"/ok%252Fprivate").status == 200  # "%2F" as text: not a slash to the app
    assert site.h2(b"/h2%2Fx") == (200, None)
    seen = site.seen()
    assert b"GET /pub%2fx?q=%2F HTTP/1.1" in seen  # the raw target, unchanged
    assert b"GET /ok%252Fprivate HTTP/1.1" in seen
    assert b"GET /h2%2Fx HTTP/1.1" in seen
    assert not [line for line in seen if b"private/" in line.lower()]


@pytest.mark.parametrize(
    "target", [b"/public%2F..%2Fprivate/x", b"/a%2F..%2F..%2Fprivate", b"/private/..%2fx"]
)
def test_dot_segments_behind_encoded_slashes_are_400(site: Site, target: bytes) -> None:
    """The app would see /public/../private/x unresolved: no route fits it, so refuse."""
    before = len(site.seen())
    assert site.get(target).status == 400
    assert site.h2(target) == (400, None)
    assert len(site.seen()) == before


def test_static_files_still_refuse_encoded_slashes(site: Site) -> None:
    assert site.get(b"/static/a/b.txt").status == 200
    assert site.get(b"/static/a%2Fb.txt").status in (400, 404)
    assert site.get(b"/static%2Fa/b.txt").status in (400, 404)


@pytest.mark.parametrize("target", [b"/private%2fx", b"/pub%2Fx", b"/a%2f..%2fb"])
def test_reject_encoded_slash_answers_400(strict: Site, target: bytes) -> None:
    before = len(strict.seen())
    assert strict.get(target).status == 400
    assert strict.get(b"http://a.test" + target).status == 400
    assert strict.h2(target) == (400, None)
    assert len(strict.seen()) == before


def test_reject_encoded_slash_leaves_other_escapes_alone(strict: Site) -> None:
    assert strict.get(b"/ok%252Fx").status == 200
    assert strict.get(b"/private/x").status == 403
    assert strict.get(b"/caf%C3%A9?x=%2F").status == 200  # only the path counts


# -- item 10: underscores in header names ---------------------------------------------------

SPOOF = b"X_Forwarded_Proto: https\r\nX_Custom: 1\r\nX-Normal: 1\r\n"


def _head_of(site: Site, path: bytes) -> bytes:
    (head,) = [h for h in site.heads() if h.startswith(b"GET " + path + b" ")]
    return head.lower()


def test_underscore_header_names_are_dropped(site: Site) -> None:
    assert site.get(b"/hdr1", extra=SPOOF).status == 200
    head = _head_of(site, b"/hdr1")
    assert b"x-normal: 1" in head
    assert b"x_forwarded_proto" not in head and b"x_custom" not in head
    assert b"x-forwarded-proto: http\r\n" in head + b"\r\n"


def test_underscore_header_names_kept_when_allowed(strict: Site) -> None:
    assert strict.get(b"/hdr2", extra=SPOOF).status == 200
    head = _head_of(strict, b"/hdr2")
    assert b"x_forwarded_proto: https" in head and b"x_custom: 1" in head


def test_underscore_header_names_over_http2(site: Site) -> None:
    with RawH2(site.server.port) as conn:
        conn.request(1, b"/hdr3", authority=b"a.test", extra=[(b"x_custom", b"1"), (b"x-ok", b"1")])
        assert conn.response(1).status == 200
    head = _head_of(site, b"/hdr3")
    assert b"x-ok: 1" in head and b"x_custom" not in head


# -- item 10: methods bext does not know ----------------------------------------------------


@pytest.mark.parametrize("method", [b"FOO", b"SOURCE", b"BREW", b"MKWORKSPACE"])
def test_unknown_methods_are_proxied(site: Site, strict: Site, method: bytes) -> None:
    for where in (site, strict):
        path = b"/m-" + method.lower()
        response = where.get(path, method=method)
        assert response.status == 200 and response.body.startswith(b"ok ")
        assert method + b" " + path + b" HTTP/1.1" in where.seen()
    assert site.h2(b"/h2-" + method.lower(), method=method) == (200, None)
    assert method + b" /h2-" + method.lower() + b" HTTP/1.1" in site.seen()


def test_unknown_method_pipelined_between_others(site: Site) -> None:
    with RawConnection(site.server.port) as conn:
        conn.send(
            b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nFOO /p2 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /p3 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert [conn.read_response().status for _ in range(3)] == [200, 200, 200]
    assert [line for line in site.seen() if b"/p" in line][-3:] == [
        b"GET /p1 HTTP/1.1",
        b"FOO /p2 HTTP/1.1",
        b"GET /p3 HTTP/1.1",
    ]


def test_static_files_answer_405_to_unknown_methods(site: Site) -> None:
    response = site.get(b"/static/a/b.txt", method=b"FOO")
    assert response.status == 405 and response.header("allow") is not None


def test_invalid_methods_are_still_400(site: Site) -> None:
    assert site.get(b"/x", method=b"get").status == 400
    assert site.get(b"/x", method=b"G@T").status == 400


# -- dot segments: routing resolves them, so the upstream must get them resolved -------------


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        (b"/private/../public?q=/..", b"/public?q=/.."),
        (b"/private/%2e%2E/x", b"/x"),
        (b"/a//../b/./c", b"/b/c"),
        (b"http://a.test/private/../y", b"/y"),
    ],
)
def test_dot_segments_reach_the_upstream_resolved(
    site: Site, target: bytes, forwarded: bytes
) -> None:
    """``/private/../public`` is routed as ``/public``; the app must not get the raw form,
    which Gunicorn passes on unresolved (a ``private/<path>`` view would match it)."""
    before = len(site.seen())
    assert site.get(target).status == 200
    assert site.seen()[before:] == [b"GET " + forwarded + b" HTTP/1.1"]
