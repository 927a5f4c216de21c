"""A rule's native access rules: client networks, methods, body size (nginx's ``allow`` /
``deny``, ``limit_except`` and a per-location ``client_max_body_size``).

Checked right after routing, before the rate limit and long before the WAF: they cost a
few comparisons, and a request refused here never reaches ModSecurity or the upstream.
The client is the address after ``trusted_proxies`` (the same function the proxy and the
rate limits use). ``deny`` wins over ``allow``; an empty ``allow`` allows every client.
A body is judged by its declared ``Content-Length`` here; a chunked body is counted while
the proxy spools it (:attr:`AccessRules.max_body_size`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from bext.config.schema import RouteRule
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.limits.keys import client_ip
from bext.proxy.headers import TrustedProxies

__all__ = ["AccessRules"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AccessRules:
    """The compiled ``allow``, ``deny``, ``methods`` and ``max_body_size`` of one rule."""

    __slots__ = ("_allow", "_allow_header", "_deny", "_methods", "_trusted", "max_body_size")

    def __init__(self, rule: RouteRule, trusted_proxies: Sequence[str]) -> None:
        self._allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in rule.allow)
        self._deny: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in rule.deny)
        self._methods = frozenset(rule.methods)
        self._allow_header = (b"Allow", ", ".join(rule.methods).encode("ascii"))
        self.max_body_size = rule.max_body_size
        self._trusted = TrustedProxies(trusted_proxies)

    @staticmethod
    def needed(rule: RouteRule) -> bool:
        """Whether ``rule`` has any access rule (others pay nothing)."""
        return bool(rule.allow or rule.deny or rule.methods or rule.max_body_size is not None)

    def check(self, request: Request) -> Response | None:
        """The refusal to send (403, 405, 413), or None to go on."""
        if self._allow or self._deny:
            address = _address(client_ip(request, self._trusted))
            if (
                address is None
                or any(address in net for net in self._deny)
                or (self._allow and not any(address in net for net in self._allow))
            ):
                return error_response(403, request.header(b"accept"))
        if self._methods and request.method not in self._methods:
            return error_response(405, request.header(b"accept"),
                                  extra_headers=[self._allow_header])  # fmt: skip
        limit = self.max_body_size
        if limit is not None:
            declared = request.header(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                return error_response(413, request.header(b"accept"),
                                      "request body too large for this URL")  # fmt: skip
        return None


@lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client address; an IPv4-mapped IPv6 address as its IPv4 form (an ``allow`` of
    ``10.0.0.0/8`` must match a dual-stack socket's ``::ffff:10.1.2.3``)."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
