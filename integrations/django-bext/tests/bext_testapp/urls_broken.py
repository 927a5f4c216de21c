from django.urls import include, path

urlpatterns = [
    path("missing/", include("bext_testapp.no_such_module")),
]
