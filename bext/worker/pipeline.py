"""The request pipeline: fixed phases that never learn the HTTP version.

Every request passes the same phases, in this order (Pingora's phases, Caddy's handlers;
ARCHITECTURE.md, decision 5):

1. **target**: the request-target is split and its path normalised (``400`` if unusable);
   the absolute form's authority overrides ``Host``. Every later phase and the upstream
   see the same normalised path, so what bext checks is what the app gets.
2. **request phases**; each may answer early (return a Response, or an awaitable of one
   or of None) or pass (None): first the admin endpoints (``/__bext/...``; other paths
   pay one prefix comparison for them), then :attr:`Pipeline.request_phases` in order,
   where the WAF joins.
3. **route**: the first matching ``[[route_rules]]`` entry (``404`` if none), noted on
   the request (:attr:`~bext.http.message.Request.route`).
4. **route phases**: what the matched rule carries besides its handler. Its rate limit
   (``limit = "NAME"``, :class:`~bext.limits.rate.RateLimit`): one shared decision per
   key for all workers, ``429`` with ``Retry-After`` when over the rate. Then, on proxy
   rules it serves, the response cache (:class:`~bext.cache.handler.CacheHandler`), which
   wraps the rule's proxy handler: lookup before it, store after it, so a hit never
   reaches the handler and only cacheable rules pay for a lookup.
5. **handler**: the route's static, proxy, respond or redirect handler.
6. **response phases**, in :attr:`Pipeline.response_phases` order, see every response,
   early answers included: compression.
7. **logging** runs once per exchange after the last byte or the failure
   (:mod:`bext.worker.exchange` calls the worker's ``record``: counters, access log).

The pipeline is compiled once per configuration, in the master before it forks (so a
config that cannot be built is refused before any worker starts), and is immutable
afterwards but for :meth:`Pipeline.bind_counters`, which each worker calls once with its
own shared-memory slot. A phase with nothing to do costs an attribute check, not an
``await``: a pipeline that answers at once returns the Response itself.

Where a new feature goes: something that may answer before the route (a filter, a
lookup) is a request phase; something that depends on the matched rule (a rule's limit)
is a route phase, attached to :class:`Route`; something that changes or watches responses is a
response phase; a new way to answer a matched route is a handler
(:mod:`bext.handlers`); per-request facts other phases need go on ``request.notes``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bext.admin.endpoints import PREFIX as ADMIN_PREFIX
from bext.admin.endpoints import AdminEndpoints
from bext.cache.admin import invalidate_endpoint
from bext.cache.engine import ResponseCache
from bext.cache.handler import CacheHandler
from bext.compress.filter import Compressor
from bext.config import Config
from bext.config.schema import RouteRule
from bext.handlers import Handler, QuickAnswer, QuickAnswers, QuickTarget
from bext.handlers.redirect import redirect_handler
from bext.handlers.respond import respond_handler
from bext.http.errors import error_response
from bext.http.message import PendingResponse, Request, Response
from bext.limits.access import AccessRules
from bext.limits.rate import RateLimit
from bext.observe.prometheus import MetricsExporter
from bext.observe.server_timing import server_timing
from bext.observe.status_page import status_endpoints
from bext.protocol.events import Headers
from bext.proxy.balancer import UpstreamGroup
from bext.proxy.handler import ProxyHandler
from bext.proxy.headers import TrustedProxies
from bext.proxy.tempspace import TempSpace
from bext.routing.path import (
    BadPath,
    absolute_form_host,
    normalize_path,
    route_path,
    split_target,
)
from bext.routing.router import Router
from bext.shm.counters import SlotCounters
from bext.shm.layout import Segment
from bext.static.handler import static_handler
from bext.waf.phase import WafGate, WafPhase

RequestPhase = Callable[[Request], "Response | Awaitable[Response | None] | None"]
"""May answer early: a Response, an awaitable of a Response or None, or None to pass."""
ResponsePhase = Callable[[Request, Response], Response]
"""Sees every response; returns it, or one that replaces it."""


class BuildError(Exception):
    """A configuration that loads but cannot be turned into a pipeline.

    ``key`` is the config key path at fault, as in :class:`~bext.config.ConfigError`.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Route:
    """A rule compiled for serving: its match keys and its ready-to-call handler."""

    pattern: str
    host: str | None
    index: int
    handler: Handler
    limit: RateLimit | None = None
    """The rule's ``[limits.NAME]``, checked after routing, before the handler."""
    access: AccessRules | None = None
    """The rule's ``allow``, ``deny``, ``methods`` and ``max_body_size``: checked first."""
    quick: QuickAnswers | None = None
    """The handler's answers without a Request (:meth:`Pipeline.quick`), when the rule
    has nothing else to run: no access rules, rate limit or WAF."""
    quick_note: str | None = None
    """What a quick answer of this rule notes as ``request.notes.cache`` (``HIT``)."""

    def claim(self, request: Request) -> None:
        """Note on ``request`` what routing and the handler would have, for a request this
        rule answered from the quick lane (the logging phase reads it)."""
        request.route = self
        if self.quick_note is not None:
            request.notes.cache = self.quick_note


def compile_route(
    rule: RouteRule,
    config: Config,
    upstreams: dict[str, UpstreamGroup],
    temp: TempSpace | None = None,
    limits: Mapping[str, RateLimit] | None = None,
    cache: ResponseCache | None = None,
    admin: AdminEndpoints | None = None,
    waf: WafPhase | None = None,
) -> Route:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in rule.headers]
    inspected = waf if waf is not None and rule.uses_waf(config.waf.enabled) else None
    handler: Handler
    quick: QuickAnswers | None = None
    if rule.respond is not None:
        handler = respond = respond_handler(rule.respond, headers)
        quick = respond.quick_answer
    elif rule.redirect is not None:
        handler = redirect_handler(rule.redirect, headers)
    elif rule.proxy is not None:
        handler = _proxy_route(rule, config, upstreams, headers, temp, cache, admin, inspected)
        if isinstance(handler, CacheHandler):
            quick = handler.quick_answer  # fresh hits only
    else:
        handler = static = static_handler(rule, config, headers)
        quick = static.quick_answer
    if inspected is not None and rule.proxy is None:
        handler = WafGate(inspected, handler, bodies=True)
    limit = limits[rule.limit] if limits is not None and rule.limit is not None else None
    access = AccessRules(rule, config.server.trusted_proxies) if AccessRules.needed(rule) else None
    if inspected is not None or limit is not None or access is not None:
        quick = None
    note = "HIT" if isinstance(handler, CacheHandler) else None
    return Route(rule.pattern, rule.host, rule.index, handler, limit, access, quick, note)


def _proxy_route(
    rule: RouteRule,
    config: Config,
    upstreams: dict[str, UpstreamGroup],
    headers: list[tuple[bytes, bytes]],
    temp: TempSpace | None,
    cache: ResponseCache | None,
    admin: AdminEndpoints | None,
    waf: WafPhase | None,
) -> Handler:
    """A proxy rule's handler with what wraps it: the WAF inspects in the proxy, after the
    cache lookup (a hit was let through when it was stored) and on the body the proxy
    spools; with ``inspect_cache_hits`` a gate before the cache takes body-less requests."""
    assert rule.proxy is not None
    proxy = ProxyHandler(
        upstreams[rule.proxy],
        TrustedProxies(
            config.server.trusted_proxies,
            underscores_in_headers=config.server.underscores_in_headers,
        ),
        request_buffering=rule.request_buffering,
        response_buffering=rule.response_buffering,
        extra_headers=headers,
        temp=temp,
        inspect=waf,
        max_body_size=rule.max_body_size,
    )
    if cache is None or not rule.uses_cache(config.cache.enabled):
        return proxy
    gate_first = waf is not None and config.waf.inspect_cache_hits
    proxy.inspect_bodyless = not gate_first
    handler: Handler = CacheHandler(
        cache,
        proxy,
        set_cookie=rule.cache_set_cookie,
        allowed=admin.allowed if admin is not None else lambda request: False,
    )
    if gate_first:
        assert waf is not None
        handler = WafGate(waf, handler, bodies=False)
    return handler


class Pipeline:
    """The compiled phases of one configuration (see the module docstring)."""

    def __init__(self, config: Config, segment: Segment | None = None) -> None:
        """Build every phase; raises :class:`BuildError` naming the key at fault."""
        with _building("server.temp_path"):
            self.temp = TempSpace(config.server.temp_path, config.server.temp_budget)
            """Where proxy temp files go, and their budget (each worker counts its own)."""
            self.temp.check()
        self.upstreams: dict[str, UpstreamGroup] = {}
        for index, upstream in enumerate(config.upstreams):
            with _building(f"upstreams.{upstream.name}"):
                self.upstreams[upstream.name] = UpstreamGroup(upstream, segment)
                self.upstreams[upstream.name].index = index
        self.limits: dict[str, RateLimit] = {}
        for limit in config.limits:
            with _building(f"limits.{limit.name}"):
                self.limits[limit.name] = RateLimit(limit, config.server.trusted_proxies, segment)
        with _building("admin"):
            self.admin = AdminEndpoints(config.admin)
        self.exporter: MetricsExporter | None = None
        if segment is not None:
            self.exporter = exporter = MetricsExporter(segment, config, self.upstreams.values())
            self.admin.endpoints["metrics"] = {"GET": exporter, "HEAD": exporter}
            self.admin.endpoints.update(status_endpoints(exporter))  # status, status.json
        self.cache: ResponseCache | None = None
        """The response cache, when some rule uses it (bound in each worker)."""
        if any(rule.uses_cache(config.cache.enabled) for rule in config.route_rules):
            with _building("cache.path"):
                self.cache = ResponseCache(config.cache, segment)
                self.cache.check()
            self.admin.endpoints["cache/invalidate"] = {"POST": invalidate_endpoint(self.cache)}
        self.waf: WafPhase | None = None
        """The WAF (rules compiled here, in the master), when some rule uses it."""
        if any(rule.uses_waf(config.waf.enabled) for rule in config.route_rules):
            with _building("waf"):
                self.waf = WafPhase(config.waf, config.server.trusted_proxies)
        routes = []
        for position, rule in enumerate(config.route_rules):
            with _building(f"route_rules[{position}]"):
                routes.append(
                    compile_route(
                        rule, config, self.upstreams, self.temp, self.limits, self.cache,
                        self.admin, self.waf,
                    )
                )  # fmt: skip
        self.router: Router[Route] = Router(routes)
        self.reject_encoded_slash = config.server.reject_encoded_slash
        self.request_phases: tuple[RequestPhase, ...] = ()
        """After the admin endpoints, which only paths under ``/__bext/`` reach."""
        response_phases: list[ResponsePhase] = []
        if config.metrics.server_timing:
            response_phases.append(server_timing)
        compressor: Compressor | None = None
        if config.compression.enabled:
            with _building("compression"):
                compressor = Compressor(config.compression)
                response_phases.append(compressor.apply)
        self.response_phases: tuple[ResponsePhase, ...] = tuple(response_phases)
        self._quick_compressor = compressor
        self._quick = (
            any(route.quick is not None for route in routes)
            and not self.request_phases
            and self.response_phases == ((compressor.apply,) if compressor is not None else ())
        )
        """The quick lane is open: some rule has quick answers, there is no request phase,
        and no response phase but compression (which :meth:`quick` runs itself). Any other
        phase, Server-Timing for one, closes it."""
        self._lanes: dict[tuple[str | None, bytes, str], tuple[Route, QuickAnswer] | None] = {}

    def bind_counters(self, counters: SlotCounters) -> None:
        """Give the handlers that count things this worker's shared-memory slot, and open
        what must be opened in the worker's own process (the cache store).

        Called once in each worker after fork: the pipeline itself is built (and shared
        copy-on-write) by the master, which has no slot of its own.
        """
        if self.cache is not None:
            self.cache.bind(counters, os.getpid())
        if self.waf is not None:
            self.waf.counters = counters
        for group in self.upstreams.values():
            group.counters = counters
        for limit in self.limits.values():
            limit.counters = counters
        if self.exporter is not None:
            self.exporter.counters = counters

    def close(self) -> None:
        """Release what :meth:`bind_counters` opened (the worker is leaving)."""
        if self.cache is not None:
            self.cache.close()

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        target = request.target
        if target[:1] != b"/":
            try:
                authority, target = absolute_form_host(target)
            except BadPath as exc:
                return self._respond(request, _bad_target(request, exc))
            if authority is not None:
                request.host = authority  # RFC 9112 §3.2.2: it overrides Host
        try:
            request.path, request.query, routed = self._paths(target)
        except BadPath as exc:
            return self._respond(request, _bad_target(request, exc))
        if request.path[:8] == ADMIN_PREFIX and (admin := self.admin(request)) is not None:
            return self._respond(request, admin)
        phases = self.request_phases
        if phases:
            index = 0
            while index < len(phases):
                answer = phases[index](request)
                index += 1
                if answer is not None:
                    if type(answer) is Response:
                        return self._respond(request, answer)
                    return self._resume(request, index, answer, routed)  # type: ignore[arg-type]
        return self._route_and_respond(request, routed)

    def _paths(self, target: bytes) -> tuple[str, bytes, str]:
        """An origin-form target's normalised path, raw query and the path routing sees.

        Raises :class:`BadPath`. Routing sees what the app will: ``%2F`` is ``/`` there
        (or refused with ``reject_encoded_slash``).
        """
        raw_path, query = split_target(target)
        routed = path = normalize_path(raw_path)
        if "%2F" in path:
            routed = route_path(raw_path, reject=self.reject_encoded_slash)
        return path, query, routed

    @property
    def quick_lane(self) -> Callable[..., tuple[Response, Route] | None] | None:
        """:meth:`quick` when the lane is open, else None: connections then never ask."""
        return self.quick if self._quick else None

    def quick(
        self, method: str, host: str | None, target: bytes, scheme: str, headers: Headers
    ) -> tuple[Response, Route] | None:
        """The quick lane: the final response and its route for a body-less request
        whose rule answers it without a :class:`Request` (:data:`~bext.handlers.QuickAnswer`),
        or None to take :meth:`handle`.

        Equivalent to :meth:`handle` by construction, never by imitation: where the
        request lands is worked out once per ``(host, target, scheme)`` by the same
        functions :meth:`handle` uses (and remembered, bounded); the rule's own quick
        answer decides; the response phases run as for any response (only compression
        can be on: with Server-Timing there is no quick lane).
        """
        if len(target) > _MAX_LANE_TARGET:
            return None  # remembered lanes stay small; a long target takes the full path
        key = (host, target, scheme)
        lane = self._lanes.get(key, _UNSEEN)
        if lane is _UNSEEN:
            lane = self._lane(host, target, scheme)
            if len(self._lanes) >= _MAX_LANES:
                self._lanes.clear()
            self._lanes[key] = lane
        if lane is None:
            return None
        route, answer = lane
        response = answer(method, headers)
        if response is None or response.status < 200:  # 1xx: the exchange makes it a 502
            return None
        compressor = self._quick_compressor
        if compressor is not None:
            response = compressor.for_fields(method, headers, response)
        return response, route

    def _lane(
        self, host: str | None, target: bytes, scheme: str
    ) -> tuple[Route, QuickAnswer] | None:
        """Where :meth:`handle` would take an origin-form ``target``, if a quick answer."""
        if not self._quick or target[:1] != b"/":
            return None
        try:
            path, query, routed = self._paths(target)
        except BadPath:
            return None
        if path[:8] == ADMIN_PREFIX:
            return None
        route = self.router.match(host, routed)
        if route is None or route.quick is None:
            return None
        answer = route.quick(QuickTarget(host, scheme, target, path, query))
        return None if answer is None else (route, answer)

    def _route_and_respond(self, request: Request, path: str) -> Response | Awaitable[Response]:
        """Route, the route phases, the handler, then the response phases."""
        route = self.router.match(request.host, path)
        if route is None:
            result: Response | Awaitable[Response] = error_response(404, request.header(b"accept"))
        else:
            request.route = route
            access = route.access
            limit = route.limit
            if access is not None and (refused := access.check(request)) is not None:
                result = refused  # route phase: the rule's access rules
            elif limit is not None and (refused := limit.check(request)) is not None:
                result = refused  # route phase: the rule's rate limit
            else:
                result = route.handler(request)
        return self._respond(request, result)

    async def _resume(
        self, request: Request, index: int, pending: Awaitable[Response | None], path: str
    ) -> Response:
        """The rest of the request phases after one that had to wait, then the route."""
        answer = await pending
        phases = self.request_phases
        while answer is None and index < len(phases):
            result = phases[index](request)
            index += 1
            answer = result if result is None or type(result) is Response else await result  # type: ignore[misc]
        if answer is not None:
            for phase in self.response_phases:  # an early answer: the response phases too
                answer = phase(request, answer)
            return answer
        routed = self._route_and_respond(request, path)  # response phases applied there
        return routed if type(routed) is Response else await routed  # type: ignore[misc]

    def _respond(
        self, request: Request, result: Response | Awaitable[Response]
    ) -> Response | Awaitable[Response]:
        """The response phases: every answer, routed or early, goes through here once."""
        phases = self.response_phases
        if not phases:
            return result
        if type(result) is Response:
            for phase in phases:
                result = phase(request, result)
            return result
        return PendingResponse(request, result, phases)  # type: ignore[arg-type]


_UNSEEN: Any = object()
_MAX_LANES = 4096
"""Remembered ``(host, target, scheme)`` lanes; all forgotten when full (clients pick the
keys)."""
_MAX_LANE_TARGET = 512
"""Longer request-targets are never looked up in, nor added to, the remembered lanes: with
:data:`_MAX_LANES` this bounds what they hold to a few MiB per worker."""


def _bad_target(request: Request, exc: BadPath) -> Response:
    return error_response(400, request.header(b"accept"), exc.reason)


@contextmanager
def _building(key: str) -> Iterator[None]:
    """Turn whatever building one part raises into a :class:`BuildError` for its key."""
    try:
        yield
    except BuildError:
        raise
    except Exception as exc:
        raise BuildError(key, str(exc) or type(exc).__name__) from exc


__all__ = ["BuildError", "Pipeline", "Route", "compile_route"]
