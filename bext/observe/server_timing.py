"""``Server-Timing`` on responses (``[metrics] server_timing = true``): what bext spent.

A response phase: ``edge`` is the time from the request head to this response being
ready (before its body is sent), ``upstream`` the time the upstream took to its response
head, ``cache`` the cache's outcome. Browsers show these in their developer tools; the
header tells a client how long the app took, so it is off by default.
"""

from __future__ import annotations

import asyncio

from bext.http.message import Request, Response

__all__ = ["server_timing"]


def server_timing(request: Request, response: Response) -> Response:
    """Add ``Server-Timing`` to ``response`` (a copy for a shared response)."""
    edge = max(0.0, asyncio.get_running_loop().time() - request.start_time) * 1000
    members = [f"edge;dur={edge:.1f}"]
    notes = request.notes
    if notes.upstream_time is not None:
        members.append(f"upstream;dur={notes.upstream_time * 1000:.1f}")
    if notes.cache is not None:
        members.append(f'cache;desc="{notes.cache}"')
    field = (b"Server-Timing", ", ".join(members).encode("ascii"))
    if response.shared:
        copy = Response(response.status, [*response.headers, field], response.body,
                        response.stream, response.content_length, response.tunnel,
                        response.file)  # fmt: skip
        return copy
    response.headers.append(field)
    return response
