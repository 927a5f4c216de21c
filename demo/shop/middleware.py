"""Answer the upstream health check before anything else runs.

bext probes ``/health`` on the app server directly (``[upstreams.django.health]``). This
middleware sits first in ``MIDDLEWARE`` so the probe never touches the database or the
session and does not depend on the Host header the prober sends (no ALLOWED_HOSTS check).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.decorators import sync_and_async_middleware

HEALTH_PATHS = frozenset({"/health", "/health/"})

SyncGetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


def health_response() -> JsonResponse:
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    response["Content-Length"] = str(len(response.content))
    return response


@sync_and_async_middleware
def HealthCheckMiddleware(
    get_response: SyncGetResponse | AsyncGetResponse,
) -> Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]:
    if iscoroutinefunction(get_response):
        async_get_response: AsyncGetResponse = get_response  # type: ignore[assignment]

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            if request.path in HEALTH_PATHS:
                return health_response()
            return await async_get_response(request)

        return async_middleware

    sync_get_response: SyncGetResponse = get_response  # type: ignore[assignment]

    def middleware(request: HttpRequest) -> HttpResponseBase:
        if request.path in HEALTH_PATHS:
            return health_response()
        return sync_get_response(request)

    return middleware
