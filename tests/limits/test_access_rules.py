"""A rule's native access rules: allow/deny networks, methods, max_body_size.

Driven through the compiled pipeline with the client address injected (the peer address
is the socket's); the chunked-body limit runs through a real master.
"""

from __future__ import annotations

import socket
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from bext.config import ConfigError
from bext.config.load import parse_config
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.worker.pipeline import Pipeline
from tests.support.origin import Answer, Origin
from tests.support.server import BextProcess, config

SITE = """
[server]
trusted_proxies = ["10.9.9.9"]

[[route_rules]]
pattern = "/admin/**"
allow = ["192.0.2.0/24", "2001:db8::/32"]
deny = "192.0.2.66"
respond = { status = 200, body = "admin" }

[[route_rules]]
pattern = "/api/**"
methods = ["GET", "POST"]
max_body_size = "1KB"
respond = { status = 200, body = "api" }

[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "site" }
"""


def ask(
    target: bytes, peer: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> Response:
    pipe = Pipeline(parse_config(tomllib.loads(SITE), base_dir=Path("/srv")))
    request = Request(method, target, headers or [], "1.1", "http", peer, 1, 80, EMPTY_BODY, 0.0)
    result = pipe.handle(request)
    assert isinstance(result, Response)
    return result


@pytest.mark.parametrize(
    ("peer", "headers", "status"),
    [
        ("192.0.2.10", [], 200),
        ("::ffff:192.0.2.10", [], 200),  # a dual-stack socket's form of the same client
        ("2001:db8::5", [], 200),
        ("198.51.100.1", [], 403),
        ("192.0.2.66", [], 403),  # deny wins over allow
        # Behind a trusted proxy the client is the forwarded address, not the proxy.
        ("10.9.9.9", [(b"x-forwarded-for", b"192.0.2.10")], 200),
        ("10.9.9.9", [(b"x-forwarded-for", b"198.51.100.1")], 403),
        # An untrusted peer cannot claim an allowed address.
        ("198.51.100.1", [(b"x-forwarded-for", b"192.0.2.10")], 403),
    ],
)
def test_allow_and_deny(peer: str, headers: list[tuple[bytes, bytes]], status: int) -> None:
    assert ask(b"/admin/users", peer, headers=headers).status == status


def test_other_rules_are_untouched() -> None:
    assert ask(b"/public", "198.51.100.1").body == b"site"


def test_methods_and_declared_body_size() -> None:
    assert ask(b"/api/x", "198.51.100.1", "HEAD").status == 200  # HEAD comes with GET
    refused = ask(b"/api/x", "198.51.100.1", "DELETE")
    assert refused.status == 405
    assert (b"Allow", b"GET, POST, HEAD") in refused.headers
    large = ask(b"/api/x", "198.51.100.1", "POST", [(b"content-length", b"1025")])
    assert large.status == 413
    assert ask(b"/api/x", "198.51.100.1", "POST", [(b"content-length", b"1024")]).status == 200


@pytest.mark.parametrize(
    ("rule", "key", "reason"),
    [
        ('allow = ["10.0.0.0/33"]', "route_rules[0].allow[0]", "expected an IP address or CIDR"),
        ('deny = "nowhere"', "route_rules[0].deny", "expected an IP address or CIDR"),
        ('methods = ["get"]', "route_rules[0].methods[0]", "upper-case method"),
        ('max_body_size = "lots"', "route_rules[0].max_body_size", "size"),
    ],
)
def test_bad_access_rules_are_refused(rule: str, key: str, reason: str) -> None:
    text = f'[[route_rules]]\npattern = "/**"\n{rule}\nrespond = 200\n'
    with pytest.raises(ConfigError) as raised:
        parse_config(tomllib.loads(text), base_dir=Path("/srv"))
    assert key in str(raised.value) and reason in str(raised.value)


def test_a_chunked_body_over_the_rule_limit_is_refused_while_spooled(
    start_bext: Callable[..., BextProcess],
) -> None:
    origin = Origin().start()
    origin.route("/upload", lambda request: Answer(200, [], b"stored\n"))
    try:
        text = config(f"""
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{origin.port}"
[[route_rules]]
pattern = "/**"
proxy = "app"
max_body_size = "4KB"
""")
        server = start_bext(text)

        def chunked(size: int) -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
                for start in range(0, size, 1000):
                    piece = b"a" * min(1000, size - start)
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sock.sendall(b"0\r\n\r\n")
                return sock.recv(4096)

        assert chunked(3000).startswith(b"HTTP/1.1 200")
        assert chunked(9000).startswith(b"HTTP/1.1 413")
        assert origin.count["/upload"] == 1
    finally:
        origin.stop()
