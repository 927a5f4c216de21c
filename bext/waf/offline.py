"""``bext waf test``: one request through the WAF without a server, and its verdict.

The request is built the way a browser or curl would send it: the Host header from the
URL (``localhost`` for a bare path), a browser's ``User-Agent`` and ``Accept`` unless
given (CRS scores requests without them), ``Content-Type`` and ``Content-Length`` for a
body as ``curl --data`` sends them. What cannot go on the wire as typed (spaces, control
and non-ASCII characters) is percent-encoded; everything else reaches the engine as
written, so ``/?id=1' OR '1'='1`` can be tested without hand-encoding it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from bext.waf.engine import Verdict, WafEngine

__all__ = ["OfflineRequest", "UsageError", "build_request", "describe", "run"]

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CLIENT = ("192.0.2.10", 50000)
"""The client the engine is told about: a documentation address (RFC 5737)."""

# Printable ASCII but the space: what an HTTP request-target may carry as typed.
_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))


class UsageError(ValueError):
    """A URL or header that cannot make a request (exit 2)."""


@dataclass(slots=True)
class OfflineRequest:
    method: str
    target: str
    """The request-target as sent: origin form, ``/path?query``."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    server_port: int = 80


def build_request(
    url: str, method: str | None = None, headers: list[str] | None = None, body: bytes | None = None
) -> OfflineRequest:
    """The request for ``url`` (a path or an ``http(s)://`` URL) with ``headers`` given as
    ``"Name: value"``; ``method`` defaults to GET, or POST with a body (like curl)."""
    host = "localhost"
    port = 80
    if url.lower().startswith(("http://", "https://")):
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise UsageError(f"{url!r} is not a usable URL: {exc}") from None
        if not parts.hostname:
            raise UsageError(f"{url!r} has no host name")
        host = parts.netloc.rpartition("@")[2]
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
    elif url.startswith("/"):
        target = url.partition("#")[0]
    else:
        raise UsageError(f"{url!r}: expected a path such as /search?q=x or an http(s):// URL")
    target = quote(target, safe=_SAFE)
    parsed: list[tuple[str, str]] = []
    for line in headers or []:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or any(ch.isspace() or ord(ch) < 0x21 for ch in name):
            raise UsageError(f"--header {line!r}: expected 'Name: value'")
        if any(ord(ch) < 0x20 and ch != "\t" for ch in value):
            raise UsageError(f"--header {line!r}: control characters in the value")
        parsed.append((name, value.strip()))
    given = {name.lower() for name, _ in parsed}
    method = (method or ("POST" if body is not None else "GET")).upper()
    if not re.fullmatch(r"[A-Z0-9!#$%&'*+.^_`|~-]+", method):
        raise UsageError(f"--method {method!r} is not an HTTP method")
    extra: list[tuple[str, str]] = []
    if "host" not in given:
        extra.append(("Host", host))
    if "user-agent" not in given:
        extra.append(("User-Agent", USER_AGENT))
    if "accept" not in given:
        extra.append(("Accept", ACCEPT))
    data = body or b""
    if body is not None or method in ("POST", "PUT", "PATCH"):
        if "content-type" not in given and data:
            extra.append(("Content-Type", "application/x-www-form-urlencoded"))
        if "content-length" not in given and "transfer-encoding" not in given:
            extra.append(("Content-Length", str(len(data))))
    return OfflineRequest(method, target, [*extra, *parsed], data, port)


def run(engine: WafEngine, request: OfflineRequest) -> Verdict:
    """Inspect ``request`` as the proxy would (the body cut to ``[waf] body_limit``)."""
    return engine.inspect(
        request.method,
        request.target,
        "1.1",
        request.headers,
        request.body[: engine.config.body_limit],
        CLIENT,
        ("127.0.0.1", request.server_port),
    )


def describe(engine: WafEngine, request: OfflineRequest, verdict: Verdict) -> list[str]:
    """The lines ``bext waf test`` prints: the request, the verdict, the score, the rules."""
    config = engine.config
    host = next((value for name, value in request.headers if name.lower() == "host"), "")
    lines = [f"{request.method} {request.target} (Host: {host}, {len(request.body)} bytes body)"]
    if verdict.blocked:
        lines.append(f"blocked ({verdict.status})")
    elif verdict.exceeded:
        lines.append("would be blocked (detect mode)")
    else:
        lines.append("passed")
    score = verdict.score
    findings = verdict.findings
    if score is not None:
        lines.append(f"anomaly score: {score} (threshold {config.anomaly_threshold})")
    elif findings and not verdict.exceeded:
        lines.append(f"anomaly score below the threshold ({config.anomaly_threshold})")
    if findings:
        lines.append("rules matched:")
    for match in findings:
        data = match.data.replace("\n", "\\n")
        lines.append(f"  {match.rule_id}  {match.message}" + (f"  [{data}]" if data else ""))
    return lines
