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
    *site_urlpatterns,
]
