"""Header rewriting at the proxy boundary (RFC 9110 §7.6.1, and what Django expects).

Towards the upstream: hop-by-hop fields go (Connection and whatever it names, Keep-Alive,
TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*), framing is bext's own, and the
X-Forwarded-* fields are set by bext, never taken from the client unless the client is a
trusted proxy. Django with ``SECURE_PROXY_SSL_HEADER`` and ``USE_X_FORWARDED_HOST`` then sees
the real scheme, host and client. Field names holding ``_`` are dropped (nginx's
``underscores_in_headers off``): CGI-style bridges (WSGI's ``environ``, Django's
``request.META``) map ``-`` and ``_`` alike to ``_``, so ``X_Forwarded_Proto`` would reach
the app as the ``X-Forwarded-Proto`` bext sets; ``server.underscores_in_headers`` keeps them.

Towards the client: hop-by-hop fields go, and so do ``Date``/``Server`` (bext writes its
own) and the ``X-Accel-*`` controls meant for the edge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from bext.http.message import Request
from bext.observe.tracing import identity_lines
from bext.protocol.events import Headers

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
_SET_BY_BEXT = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"forwarded",
     b"x-request-id", b"traceparent", b"tracestate"}
)  # fmt: skip
_REQUEST_DROP = HOP_BY_HOP | _SET_BY_BEXT | {b"content-length", b"expect"}
_METHODS = {
    method: method.encode("ascii")
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
}
"""The request line's method for the common ones, without an encode per request."""
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", b"date", b"server"}


def connection_names(value: bytes, dropped: frozenset[bytes]) -> AbstractSet[bytes]:
    """What a ``Connection`` value names beyond the fields in ``dropped`` (RFC 9110
    §7.6.1: the recipient removes the fields it names). The usual value, ``keep-alive``,
    names a hop-by-hop field, so it costs one comparison and no set."""
    lowered = value.lower()
    if lowered == b"keep-alive":
        return _NOTHING
    return {token.strip() for token in lowered.split(b",")} - dropped


_NOTHING: frozenset[bytes] = frozenset()

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """What the proxy takes from the client's header section as it is.

    Which peers may tell bext who the client is (``server.trusted_proxies``), and whether
    field names with ``_`` go upstream (``server.underscores_in_headers``).
    """

    def __init__(self, cidrs: Sequence[str], *, underscores_in_headers: bool = False) -> None:
        self._networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in cidrs
        )
        self.underscores_in_headers = underscores_in_headers

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


def client_addresses(request: Request, trusted: TrustedProxies) -> tuple[bytes, bytes]:
    """(X-Forwarded-For to send, the real client IP) for ``request``."""
    peer = request.client_addr.encode("ascii")
    if not trusted._networks or not trusted.trusts(request.client_addr):
        return peer, peer
    incoming = [value for name, value in request.headers if name == b"x-forwarded-for"]
    if not incoming:
        return peer, peer
    chain = b", ".join(incoming)
    real = peer
    for hop in reversed([h.strip() for h in chain.split(b",")]):
        real = hop
        if not trusted.trusts(hop.decode("latin-1")):
            break
    return chain + b", " + peer, real


_SCHEMES = {"http": b"http", "https": b"https"}
_UNDERSCORE = ord("_")


def upstream_request_head(
    request: Request,
    target: bytes,
    trusted: TrustedProxies,
    content_length: int | None,
    chunked: bool,
    upgrade: bytes | None = None,
    drop: frozenset[bytes] = _REQUEST_DROP,
) -> bytes:
    """The HTTP/1.1 request head bext sends upstream for ``request``.

    ``drop``: the field names not forwarded as they are; the fields that ``Connection``
    names join it (RFC 9110 §7.6.1), in a second pass in the rare case that they are not
    hop-by-hop already. The client's ``x-request-id``, ``traceparent`` and
    ``tracestate`` are replaced by bext's own (:func:`bext.observe.tracing.identity_lines`,
    given what the client sent).
    """
    forwarded_for, real_ip = client_addresses(request, trusted)
    trusted_peer = bool(trusted._networks) and trusted.trusts(request.client_addr)
    method = request.method
    parts = [_METHODS.get(method) or method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    host = None
    named: set[bytes] | None = None
    underscores = trusted.underscores_in_headers
    given_id = traceparent = tracestate = None
    for name, value in request.headers:
        if name in drop:
            if name == b"connection" or name == b"proxy-connection":
                names = connection_names(value, drop)
                if names:
                    named = (named or set()) | names
            elif name == b"forwarded" and trusted_peer:
                parts += [name, b": ", value, b"\r\n"]
            elif name == b"traceparent":
                traceparent = value if traceparent is None else b""  # two: invalid
            elif name == b"tracestate":
                tracestate = value if tracestate is None else tracestate + b"," + value
            elif name == b"x-request-id" and given_id is None:
                given_id = value
            continue
        if not underscores and _UNDERSCORE in name:  # a byte value: see bext.routing.path
            continue  # X_Forwarded_Proto would read as X-Forwarded-Proto to the app
        if name == b"host":
            host = value
        parts += [name, b": ", value, b"\r\n"]
    if named:
        return upstream_request_head(
            request, target, trusted, content_length, chunked, upgrade, drop | named
        )
    if host is None and request.host is not None:
        host = request.host.encode("latin-1")
        parts += [b"host: ", host, b"\r\n"]
    parts += [
        b"x-forwarded-for: ", forwarded_for, b"\r\n",
        b"x-real-ip: ", real_ip, b"\r\n",
        b"x-forwarded-proto: ", _SCHEMES.get(request.scheme) or request.scheme.encode("ascii"),
        b"\r\n",
    ]  # fmt: skip
    if host is not None:
        parts += [b"x-forwarded-host: ", host, b"\r\n"]
    parts.append(identity_lines(request, trusted, given_id, traceparent, tracestate))
    if upgrade is not None:
        parts += [b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n"]
    if content_length is not None:
        parts.append(b"content-length: %d\r\n" % content_length)
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def client_response_headers(headers: Headers) -> tuple[Headers, bool]:
    """Headers to pass to the client, and whether the app asked not to buffer.

    ``X-Accel-Buffering: no`` (nginx's convention, which Django apps already use for
    streaming responses) turns response buffering off for this response.
    """
    out: Headers = []
    no_buffering = False
    named: set[bytes] | None = None  # what Connection names: hop-by-hop too (RFC 9110 §7.6.1)
    for name, value in headers:
        lowered = name.lower()  # upstream names come as sent: "Connection", "X-Accel-..."
        if lowered in _RESPONSE_DROP:
            if lowered == b"connection" or lowered == b"proxy-connection":
                names = connection_names(value, _RESPONSE_DROP)
                if names:
                    named = (named or set()) | names
            continue
        if lowered.startswith(b"x-accel-"):
            if lowered == b"x-accel-buffering" and value.strip().lower() == b"no":
                no_buffering = True
            continue
        if lowered == b"content-type" and value.startswith(b"text/event-stream"):
            no_buffering = True
        out.append((name, value))
    if named:  # rare: the Connection field may come after the fields it names
        out = [(name, value) for name, value in out if name.lower() not in named]
    return out, no_buffering
