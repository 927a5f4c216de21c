"""``respond`` rules carry a strong ETag computed at load (the compressed-body cache key)."""

from __future__ import annotations

from bext.config.schema import RespondAction
from bext.handlers.respond import respond_handler
from bext.http.message import Response
from tests.compress.support_compress import compressor, header, request


def respond(action: RespondAction, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    result = respond_handler(action, headers or [])(request())
    assert isinstance(result, Response)
    return result


def test_respond_has_a_strong_stable_etag() -> None:
    action = RespondAction(body="hello " * 500, content_type="text/plain")
    etag = header(respond(action), b"etag")
    assert etag is not None and etag.startswith(b'"') and etag.endswith(b'"')
    assert header(respond(action), b"etag") == etag  # same at every load, in every worker
    other_body = RespondAction(body="hello " * 499, content_type="text/plain")
    other_type = RespondAction(body="hello " * 500, content_type="text/html")
    assert header(respond(other_body), b"etag") != etag
    assert header(respond(other_type), b"etag") != etag


def test_the_rules_own_etag_wins() -> None:
    response = respond(RespondAction(body="x"), [(b"etag", b'"mine"')])
    assert [v for n, v in response.headers if n.lower() == b"etag"] == [b'"mine"']


def test_only_200_gets_an_etag() -> None:
    assert header(respond(RespondAction(status=404, body="gone")), b"etag") is None
    assert header(respond(RespondAction(status=503, body="later")), b"etag") is None


def test_respond_compressions_are_cached() -> None:
    handler = respond_handler(RespondAction(body="cache me " * 400), [])
    comp = compressor()
    first = comp.apply(request("br"), handler(request("br")))  # type: ignore[arg-type]
    assert header(first, b"content-encoding") == b"br"
    assert len(comp.cache) == 1
    again = comp.apply(request("br"), handler(request("br")))  # type: ignore[arg-type]
    assert again.body is first.body
