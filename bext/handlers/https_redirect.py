"""`redirect_http = true`: the plain-HTTP listener sends every request to HTTPS.

Like Caddy, the redirect is a 308 so a POST stays a POST; the host is the one the client
asked for (without its port) and the path and query are kept byte for byte. A Host that is
not a plausible name or address gets a 400 instead of a redirect to wherever it points.
"""

from __future__ import annotations

import re

from bext.http.errors import error_response
from bext.http.message import Request, Response
from bext.routing.host import normalize_host
from bext.routing.path import BadPath, absolute_form_host

_PLAUSIBLE_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]+")
_BODY = b"308 Permanent Redirect\n"
_CONTENT_TYPE = (b"Content-Type", b"text/plain; charset=utf-8")


class HttpsRedirect:
    """A request handler (same shape as the pipeline) for the plain listener."""

    def __init__(self, tls_port: int) -> None:
        self._port_suffix = b"" if tls_port == 443 else b":%d" % tls_port

    def handle(self, request: Request) -> Response:
        raw_host = request.host or ""
        target = request.target
        if target[:1] != b"/":
            try:
                authority, target = absolute_form_host(target)
            except BadPath as exc:
                return error_response(400, request.header(b"accept"), exc.reason)
            raw_host = authority or raw_host
            if target[:1] != b"/":
                target = b"/"  # asterisk-form (OPTIONS *): the site root
        host = normalize_host(raw_host) if raw_host else ""
        if not host or _PLAUSIBLE_HOST.fullmatch(host) is None:
            return error_response(400, request.header(b"accept"), "missing or invalid Host")
        if ":" in host:
            host = f"[{host}]"
        location = b"https://" + host.encode("ascii") + self._port_suffix + target
        return Response(308, [(b"Location", location), _CONTENT_TYPE], _BODY)
