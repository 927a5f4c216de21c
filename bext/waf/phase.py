"""The WAF as bext runs it: one check per request, its answer, its audit log line.

:meth:`WafPhase.check` takes a routed request and the first ``body_limit`` bytes of its
body (exactly the bytes the upstream will receive: the proxy spools the body once and
hands the WAF its head) and returns the answer to send instead, or None to go on. It runs
where the route says (``waf = true``, by default every proxy rule when ``[waf] enabled``):
inside the proxy handler, after the cache lookup, so a cache hit, which the WAF let
through when it was stored, is not inspected again (``inspect_cache_hits`` changes that),
and never on static files unless their rule asks.

Blocked requests get ``403`` (``400`` for a body ModSecurity cannot parse) with a small
page naming the request id; the same id is in the audit log line and the access log. In
``detect`` mode nothing is blocked and what would have been is logged the same way.
Matches that stay below CRS's anomaly threshold are part of the score, not events: they
are neither logged nor blocked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable
from pathlib import Path

from bext.config.schema import WafConfig
from bext.handlers import Handler
from bext.http.body import EMPTY_BODY
from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.limits.keys import client_ip
from bext.observe import tracing
from bext.proxy.headers import TrustedProxies
from bext.shm.counters import NullCounters, SlotCounters
from bext.waf.engine import Match, Verdict, WafEngine

log = logging.getLogger("bext")

__all__ = ["AuditLog", "WafGate", "WafPhase"]


class AuditLog:
    """``[waf] audit_log``: one JSON line per request the WAF found something in.

    Opened for each line (``O_APPEND``, one ``write``): lines are rare (attacks and false
    positives), so no descriptor has to follow reloads, log rotation or forks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> None:
        """Refuse a path that cannot be written (before any worker starts)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        os.close(fd)

    def write(self, document: dict[str, object]) -> None:
        line = json.dumps(document, ensure_ascii=True, separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("waf: cannot write the audit log %s: %s", self.path, exc)


class WafPhase:
    """One configuration's WAF: the engine (built in the master) and what a check does."""

    def __init__(self, config: WafConfig, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.config = config
        self.engine = WafEngine(config)
        self.trusted = TrustedProxies(trusted_proxies)
        self.limit = config.body_limit
        self.audit = AuditLog(config.audit_log) if config.audit_log is not None else None
        if self.audit is not None:
            self.audit.check()
        self.counters: SlotCounters = NullCounters()
        """This worker's slot (``Pipeline.bind_counters``)."""

    def check(self, request: Request, body: bytes, size: int | None = None) -> Response | None:
        """Inspect ``request`` with ``body`` (its first bytes; ``size`` is the whole body's,
        when the proxy spooled it); the answer to send instead (blocked), or None to let it
        through."""
        self.counters.waf("inspected")
        request_id = tracing.request_id(request, self.trusted)
        notes = request.notes
        verdict = self.engine.inspect(
            request.method,
            request.target.decode("latin-1"),
            request.http_version,
            _fields(request, size),
            body[: self.limit],
            (client_ip(request, self.trusted), request.client_port),
            ("127.0.0.1", request.server_port),
            request_id,
        )
        if verdict.blocked:
            self.counters.waf("blocked")
            notes.waf = "BLOCK"
            self._report(request, verdict, "block")
            detail = f"Blocked by the web application firewall. Request id: {request_id}"
            return error_response(verdict.status, request.header(b"accept"), detail,
                                  [(b"X-Request-ID", request_id.encode("ascii"))])  # fmt: skip
        if verdict.exceeded:  # detect mode: what would have been blocked
            self.counters.waf("detected")
            notes.waf = "DETECT"
            self._report(request, verdict, "detect")
        else:
            notes.waf = "PASS"
        return None

    def _report(self, request: Request, verdict: Verdict, action: str) -> None:
        findings = verdict.findings
        score = verdict.score
        rules = ", ".join(f"{match.rule_id} {match.message!r}" for match in findings[:5])
        level = logging.WARNING if action == "block" else logging.INFO
        log.log(level, "waf: %s %s %s from %s (id %s, score %s): %s", action, request.method,
                request.target.decode("latin-1")[:200], request.notes.client_ip,
                request.notes.request_id, score, rules or "-")  # fmt: skip
        if self.audit is None:
            return
        self.audit.write(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "id": request.notes.request_id,
                "client": request.notes.client_ip,
                "method": request.method,
                "uri": request.target.decode("latin-1"),
                "host": request.host,
                "action": action,
                "status": verdict.status or None,
                "score": score,
                "rules": [_rule(match) for match in findings],
            }
        )


def _rule(match: Match) -> dict[str, object]:
    return {"id": match.rule_id, "msg": match.message, "severity": match.severity,
            "data": match.data, "tags": list(match.tags)}  # fmt: skip


def _fields(request: Request, size: int | None) -> list[tuple[str, str]]:
    """The request's fields for the engine. A spooled body is sent upstream with its
    Content-Length (the proxy de-chunks), so the engine is told that length too: it is
    how the rules tell a body cut at ``body_limit`` from one that is malformed."""
    fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers]
    if size is not None and not any(name == b"content-length" for name, _ in request.headers):
        fields.append(("Content-Length", str(size)))
    return fields


class WafGate:
    """The WAF in front of a handler that does not inspect by itself: static, ``respond``
    and ``redirect`` rules with ``waf = true`` (``bodies``: every request, by its fields,
    as those handlers read no body), and a cached proxy rule with ``inspect_cache_hits``
    (requests without a body, before the cache lookup; the proxy behind the cache
    inspects the others with their body)."""

    __slots__ = ("bodies", "handler", "phase")

    def __init__(self, phase: WafPhase, handler: Handler, *, bodies: bool) -> None:
        self.phase = phase
        self.handler = handler
        self.bodies = bodies

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        if self.bodies or request.body is EMPTY_BODY:
            refused = self.phase.check(request, b"")
            if refused is not None:
                return refused
        return self.handler(request)
