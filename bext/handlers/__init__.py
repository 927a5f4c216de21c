"""Request handlers: what a route does once it matched.

A handler is a callable taking a :class:`~bext.http.message.Request` and returning a
:class:`~bext.http.message.Response`, or an awaitable of one when it has to wait (proxy,
large files). Handlers never see the HTTP version or the socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bext.http.message import Request, Response
from bext.protocol.events import Headers

Handler = Callable[[Request], Response | Awaitable[Response]]

QuickAnswer = Callable[[str, str, Headers], Response | None]
"""A handler's answer to a body-less request that needs no
:class:`~bext.http.message.Request`: ``(method, normalised path, header fields)`` to a
*shared* Response (the same object every time, read-only), or None when this request needs
the full path. It must return exactly what the handler itself would for the same request:
the HTTP/1.1 connection sends it without building a Request, routing or an exchange
(:meth:`bext.worker.pipeline.Pipeline.quick`). A rule with access rules, a rate limit or
the WAF has none.
"""
