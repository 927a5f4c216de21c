"""URLs of the demo site. Trailing slashes exactly as listed: the tests use these paths."""

from django.contrib import admin
from django.urls import path

from shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("form/", views.message_form, name="form"),
    path("health", views.health, name="health"),
    path("whoami", views.whoami, name="whoami"),
    path("stream", views.stream, name="stream"),
    path("events", views.events, name="events"),
    path("upload", views.upload, name="upload"),
    path("download", views.download, name="download"),
    path("slow", views.slow, name="slow"),
    path("admin/", admin.site.urls),
]
