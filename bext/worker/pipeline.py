"""The request pipeline: target normalisation -> route -> handler.

Phases arrive as the features do (ARCHITECTURE.md, decision 5): WAF and cache lookup slot
in between routing and the handler, cache store and logging after it. The pipeline is
built once per configuration (an immutable compiled object) and knows nothing about HTTP
versions or sockets.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from bext.compress.filter import Compressor
from bext.config import Config
from bext.config.schema import RouteRule
from bext.handlers import Handler
from bext.handlers.redirect import redirect_handler
from bext.handlers.respond import respond_handler
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.proxy.balancer import UpstreamGroup
from bext.proxy.handler import ProxyHandler
from bext.proxy.headers import TrustedProxies
from bext.routing.path import BadPath, absolute_form_host, normalize_path, split_target
from bext.routing.router import Router
from bext.shm.counters import NullCounters, SlotCounters
from bext.shm.layout import Segment
from bext.static.handler import static_handler


@dataclass(frozen=True, slots=True)
class Route:
    """A rule compiled for serving: its match keys and its ready-to-call handler."""

    pattern: str
    host: str | None
    index: int
    handler: Handler


def compile_route(
    rule: RouteRule,
    config: Config,
    upstreams: dict[str, UpstreamGroup],
    counters: SlotCounters,
) -> Route:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in rule.headers]
    handler: Handler
    if rule.respond is not None:
        handler = respond_handler(rule.respond, headers)
    elif rule.redirect is not None:
        handler = redirect_handler(rule.redirect, headers)
    elif rule.proxy is not None:
        handler = ProxyHandler(
            upstreams[rule.proxy],
            TrustedProxies(config.server.trusted_proxies),
            request_buffering=rule.request_buffering,
            response_buffering=rule.response_buffering,
            extra_headers=headers,
            counters=counters,
        )
    else:
        handler = static_handler(rule, config, headers)
    return Route(rule.pattern, rule.host, rule.index, handler)


class Pipeline:
    def __init__(
        self,
        config: Config,
        segment: Segment | None = None,
        counters: SlotCounters | None = None,
    ) -> None:
        counters = counters or NullCounters()
        self.upstreams = {
            upstream.name: UpstreamGroup(upstream, segment) for upstream in config.upstreams
        }
        self.router: Router[Route] = Router(
            [compile_route(rule, config, self.upstreams, counters) for rule in config.route_rules]
        )
        self.compressor = Compressor(config.compression) if config.compression.enabled else None

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        target = request.target
        if target[:1] != b"/":
            try:
                authority, target = absolute_form_host(target)
            except BadPath as exc:
                return error_response(400, request.header(b"accept"), exc.reason)
            if authority is not None:
                request.host = authority  # RFC 9112 §3.2.2: it overrides Host
        raw_path, request.query = split_target(target)
        try:
            request.path = normalize_path(raw_path)
        except BadPath as exc:
            return error_response(400, request.header(b"accept"), exc.reason)
        route = self.router.match(request.host, request.path)
        if route is None:
            return error_response(404, request.header(b"accept"))
        result = route.handler(request)
        compressor = self.compressor
        if compressor is None:
            return result
        if type(result) is Response:
            return compressor.apply(request, result)
        return _compress_later(compressor, request, result)  # type: ignore[arg-type]


async def _compress_later(
    compressor: Compressor, request: Request, pending: Awaitable[Response]
) -> Response:
    return compressor.apply(request, await pending)
