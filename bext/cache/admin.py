"""``POST /__bext/cache/invalidate``: purges from the app (django-bext) or an operator.

An admin endpoint (:mod:`bext.admin.endpoints`: loopback peers or the bearer token). The
body is the JSON object :func:`bext.cache.purge.parse_body` reads, for example
``{"tags": ["products"]}``; the answer is ``200`` with what was done,
``{"ok": true, "tags": 1, "entries": 0, "all": false}``, or ``400`` with the reason
(``{"ok": false, "error": "..."}``), ``413`` for a body over 64 KiB, ``503`` if this
worker could not open the store.
"""

from __future__ import annotations

import json

from bext.admin.endpoints import Endpoint
from bext.cache.engine import ResponseCache
from bext.cache.purge import MAX_BODY_BYTES, PurgeError, parse_body
from bext.http.body import BodyError
from bext.http.message import Request, Response

__all__ = ["invalidate_endpoint"]

_HEADERS = [(b"Content-Type", b"application/json"), (b"Cache-Control", b"no-store")]


def _json(status: int, document: dict[str, object]) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode() + b"\n"
    return Response(status, list(_HEADERS), body)


def invalidate_endpoint(cache: ResponseCache) -> Endpoint:
    """The endpoint function for ``cache``."""

    async def invalidate(request: Request) -> Response:
        declared = request.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _json(413, {"ok": False, "error": f"body over {MAX_BODY_BYTES} bytes"})
        parts: list[bytes] = []
        size = 0
        try:
            async for data in request.body:
                size += len(data)
                if size > MAX_BODY_BYTES:
                    return _json(413, {"ok": False, "error": f"body over {MAX_BODY_BYTES} bytes"})
                parts.append(data)
        except BodyError as exc:
            return _json(400, {"ok": False, "error": str(exc)})
        try:
            purge = parse_body(b"".join(parts))
        except PurgeError as exc:
            return _json(400, {"ok": False, "error": exc.reason})
        if not cache.ready:
            return _json(503, {"ok": False, "error": "the cache store is not available"})
        result = cache.purge(purge)
        return _json(200, {"ok": True, **result.as_json()})

    return invalidate
