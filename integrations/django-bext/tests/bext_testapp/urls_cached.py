from django.urls import include, path, re_path
from django.views.decorators.cache import cache_page

from bext_testapp import cache_views as v

urlpatterns = [
    path("plain/", v.plain),
    path("public/", v.public_untagged, name="public"),
    path("async-public/", v.async_public_untagged),
    path("tags-outside/", v.tags_outside),
    path("tags-inside/", v.tags_inside),
    path("cache-page/", v.cache_page_untagged),
    path("cache-page-tagged/", v.cache_page_tagged),
    path("cache-page-zero/", v.cache_page_zero),
    path("inline-cache-page/", cache_page(30)(v.plain)),
    path("private/", v.private),
    path("public-no-cache/", v.public_no_cache),
    path("public-without-max-age/", v.public_without_max_age),
    path("public-max-age-zero/", v.public_max_age_zero),
    path("never/", v.never),
    path("never-over-cache-page/", v.never_over_cache_page),
    path("opted-out/", v.opted_out),
    path("opted-out-inside/", v.opted_out_inside),
    path("cbv/public/", v.PublicView.as_view()),
    path("cbv/public-tagged/", v.PublicTaggedView.as_view()),
    path("cbv/public-tagged-get/", v.PublicTaggedGetView.as_view()),
    path("cbv/never/", v.NeverView.as_view()),
    path("cbv/cache-page-get/", v.CachePageGetView.as_view()),
    path("cbv/opted-out/", v.OptedOutView.as_view()),
    path("callable/", v.CallableView()),
    path("shop/", include("bext_testapp.urls_included")),
    re_path(r"^re/", include([path("public/", v.public_untagged)])),
]
