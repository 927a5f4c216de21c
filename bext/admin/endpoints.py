"""The first request phase: bext's own endpoints under ``/__bext/``.

Who may use them: a client whose *socket* peer is a loopback address (127.0.0.0/8, ::1,
or 127.x mapped into IPv6), never one that only claims to be in a forwarded header; or a
request carrying ``Authorization: Bearer <[admin] token>``. For everyone else the prefix
is not special: the request goes on to the route table like any other, so a site that
serves its own ``/__bext/`` path keeps doing so for the world, and nobody outside learns
whether bext's endpoints exist. (A proxy on the same machine in front of bext makes every
client a loopback peer: set a token and keep such a proxy from forwarding ``/__bext/``.)

An endpoint is a function of the request returning a Response (or an awaitable of one);
later issues add the cache invalidation, metrics and status endpoints to the table.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from functools import lru_cache

from bext.config.schema import AdminConfig
from bext.http.errors import error_response
from bext.http.message import Request, Response

PREFIX = "/__bext/"

Endpoint = Callable[[Request], "Response | Awaitable[Response]"]

_NO_STORE = (b"Cache-Control", b"no-store")
_TEXT = (b"Content-Type", b"text/plain; charset=utf-8")


def health(request: Request) -> Response:
    """``GET /__bext/health``: this worker answers (for load balancers and monitors)."""
    return Response(200, [_TEXT, _NO_STORE], b"ok\n")


class AdminEndpoints:
    """The request phase; ``endpoints`` maps a path below :data:`PREFIX` to its methods."""

    def __init__(self, config: AdminConfig) -> None:
        token = config.token
        self._bearer = b"Bearer " + token.encode("ascii") if token else None
        self.endpoints: dict[str, dict[str, Endpoint]] = {
            "health": {"GET": health, "HEAD": health},
        }

    def __call__(self, request: Request) -> Response | Awaitable[Response] | None:
        path = request.path
        if not path.startswith(PREFIX) or not self.allowed(request):
            return None
        methods = self.endpoints.get(path[len(PREFIX) :])
        accept = request.header(b"accept")
        if methods is None:
            return error_response(404, accept, extra_headers=[_NO_STORE])
        endpoint = methods.get(request.method)
        if endpoint is None:
            allow = (b"Allow", ", ".join(sorted(methods)).encode("ascii"))
            return error_response(405, accept, extra_headers=[allow, _NO_STORE])
        return endpoint(request)

    def allowed(self, request: Request) -> bool:
        """A loopback socket peer, or the configured bearer token."""
        if is_loopback(request.client_addr):
            return True
        bearer = self._bearer
        if bearer is None:
            return False
        given = request.header(b"authorization")
        return given is not None and hmac.compare_digest(given.strip(), bearer)


@lru_cache(maxsize=1024)
def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x; False for anything unparsable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
