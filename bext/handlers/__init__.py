"""Request handlers: what a route does once it matched.

A handler is a callable taking a :class:`~bext.http.message.Request` and returning a
:class:`~bext.http.message.Response`, or an awaitable of one when it has to wait (proxy,
large files). Handlers never see the HTTP version or the socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bext.http.message import Request, Response

Handler = Callable[[Request], Response | Awaitable[Response]]
