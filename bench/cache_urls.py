"""URLs of the benchmark's cache-hit backend (see :mod:`cache_settings`): the demo's own,
after one cacheable page.

The page is the demo's index view (template rendering with ``{% static %}``, the full
middleware stack) with ``Cache-Control: public, max-age=N`` set on its response, at
``settings.BENCH_CACHED_PAGE_PATH``. It sets no cookie and varies on nothing, so both
nginx's ``proxy_cache`` and bext's response cache store it.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from shop import views
from shop.urls import urlpatterns as demo_urlpatterns


def cached_page(request: HttpRequest) -> HttpResponse:
    response = views.index(request)
    response["Cache-Control"] = f"public, max-age={settings.BENCH_CACHED_PAGE_MAX_AGE}"
    return response


urlpatterns = [
    path(settings.BENCH_CACHED_PAGE_PATH, cached_page, name="bench-cached-page"),
    *demo_urlpatterns,
]
