"""Issue 14, item 2: routing sees ``%2F`` as the ``/`` the app will see (or refuses it).

Unit level: :func:`route_path` and the compiled pipeline (no sockets). The end-to-end
version, with a real master, a real upstream and HTTP/2, is
``tests/e2e/test_hardening_paths.py``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bext.config.load import parse_config
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.routing.path import BadPath, normalize_path, route_path
from bext.worker.pipeline import Pipeline

ROUTED: list[tuple[bytes, str | None]] = [
    (b"/private%2fx", "/private/x"),
    (b"/private%2Fx", "/private/x"),
    (b"/%2Fprivate%2F", "/private/"),
    (b"/a%2F%2Fb", "/a/b"),  # merged like "//"
    (b"/a%252Fb", "/a%2Fb"),  # "%2F" as text: the app sees the text too
    (b"/a%252F..%252Fb", "/a%2F..%2Fb"),
    (b"/a/../b%2Fc", "/b/c"),  # a dot-segment the client wrote is resolved as ever
    (b"/a%2F...%2Fb", "/a/.../b"),
    (b"/a%2F..%2Fb", None),  # ".." only exists once "%2F" is decoded: refused
    (b"/a%2F.%2Fb", None),
    (b"/a/..%2Fb", None),
    (b"/a%2F..%2F..%2Fetc", None),
]


@pytest.mark.parametrize(("raw", "expected"), ROUTED, ids=repr)
def test_route_path(raw: bytes, expected: str | None) -> None:
    assert "%2F" in normalize_path(raw)  # the pipeline asks route_path only then
    if expected is None:
        with pytest.raises(BadPath):
            route_path(raw)
    else:
        assert route_path(raw) == expected


@pytest.mark.parametrize("raw", [b"/a%2fb", b"/a%2Fb", b"/%2F", b"/x/y%2f"])
def test_reject_refuses_every_encoded_slash(raw: bytes) -> None:
    with pytest.raises(BadPath, match="encoded slash"):
        route_path(raw, reject=True)


def test_reject_leaves_double_encoding_alone() -> None:
    assert route_path(b"/a%252Fb", reject=True) == "/a%2Fb"


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    st.lists(
        st.sampled_from(["a", "b", "private", ".", "..", "", "%2F", "%2f", "%252F", "/", "%41"]),
        max_size=8,
    )
)
def test_route_path_is_what_an_app_server_decodes(parts: list[str]) -> None:
    """Whenever it answers, route_path is the app's PATH_INFO (unquoted), normalised."""
    raw = ("/" + "".join(parts)).encode()
    try:
        routed = route_path(raw)
    except BadPath:
        return
    app = unquote(raw.decode())  # what Gunicorn and Uvicorn put into PATH_INFO
    assert routed == normalize_path(app.replace("%", "%25").encode())


SITE = """
[server]
{server}
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:9"

[[route_rules]]
pattern = "/private/**"
respond = {{ status = 403, body = "denied" }}

[[route_rules]]
pattern = "/**"
respond = {{ status = 200, body = "site" }}
"""


def ask(server: str, target: bytes) -> Response:
    config = parse_config(tomllib.loads(SITE.format(server=server)), base_dir=Path("/srv"))
    request = Request("GET", target, [], "1.1", "http", "10.0.0.1", 1, 80, EMPTY_BODY, 0.0)
    result = Pipeline(config).handle(request)
    assert isinstance(result, Response)
    return result


@pytest.mark.parametrize(
    "target", [b"/private%2fx", b"/private%2Fx", b"http://h/private%2fx", b"/%2fprivate/x"]
)
def test_pipeline_routes_encoded_slashes_as_slashes(target: bytes) -> None:
    assert ask("", target).status == 403
    assert ask("reject_encoded_slash = true", target).status == 400


def test_pipeline_keeps_the_path_for_the_other_phases() -> None:
    request = Request("GET", b"/pub%2fx", [], "1.1", "http", "10.0.0.1", 1, 80, EMPTY_BODY, 0.0)
    config = parse_config(tomllib.loads(SITE.format(server="")), base_dir=Path("/srv"))
    result = Pipeline(config).handle(request)
    assert isinstance(result, Response) and result.body == b"site"
    assert request.path == "/pub%2Fx"  # static files still see (and refuse) the text
