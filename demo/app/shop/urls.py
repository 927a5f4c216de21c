"""URLs of the demo: the example app's pages first, then the starter project's own.

``/`` is the demo's index (it shadows the starter's home page); ``/admin/`` comes from
demosite/urls.py; ``/health`` is answered by demosite.middleware before URL routing.
Trailing slashes exactly as listed: the tests use these paths.
"""

from django.urls import path

from demosite.urls import urlpatterns as site_urlpatterns
from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("form/", views.message_form, name="form"),
    path("whoami", views.whoami, name="whoami"),
    path("stream", views.stream, name="stream"),
    path("events", views.events, name="events"),
    path("upload", views.upload, name="upload"),
    path("download", views.download, name="download"),
    path("slow", views.slow, name="slow"),
    path("products/", views.products, name="products"),
    path("products/async/", views.products_async, name="products-async"),
    path("lang/", views.accept_language, name="lang"),
    path("cookie/", views.sets_cookie, name="cookie"),
    path("slow-cached/", views.slow_cached, name="slow-cached"),
    path("stale-if-error/", views.stale_if_error, name="stale-if-error"),
    *site_urlpatterns,
]
