from django.urls import include, path

from bext_testapp import cache_views as v

urlpatterns = [
    path("items/", v.public_untagged),
    path("tagged/", v.tags_inside),
    path("deeper/", include([path("page/", v.cache_page_untagged)])),
]
