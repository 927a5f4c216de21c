"""Views for the django_bext.W005 check (cached views without cache tags)."""

from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import cache_control, cache_page, never_cache

from django_bext import cache_tags, untagged

PUBLIC = cache_control(public=True, max_age=60)


def plain(request):
    return HttpResponse("ok")


@PUBLIC
def public_untagged(request):
    return HttpResponse("ok")


@cache_control(public=True, s_maxage=300)
async def async_public_untagged(request):
    return HttpResponse("ok")


@cache_tags("x")
@cache_control(public=True, max_age=60)
def tags_outside(request):
    return HttpResponse("ok")


@cache_control(public=True, max_age=60)
@cache_tags("x")
def tags_inside(request):
    return HttpResponse("ok")


@cache_page(60)
def cache_page_untagged(request):
    return HttpResponse("ok")


@cache_page(60)
@cache_tags("x")
def cache_page_tagged(request):
    return HttpResponse("ok")


@cache_page(0)
def cache_page_zero(request):
    return HttpResponse("ok")


@cache_control(private=True, max_age=60)
def private(request):
    return HttpResponse("ok")


@cache_control(public=True, max_age=60, no_cache=True)
def public_no_cache(request):
    return HttpResponse("ok")


@cache_control(public=True)
def public_without_max_age(request):
    return HttpResponse("ok")


@cache_control(public=True, max_age=0)
def public_max_age_zero(request):
    return HttpResponse("ok")


@never_cache
def never(request):
    return HttpResponse("ok")


@never_cache
@cache_page(60)
def never_over_cache_page(request):
    return HttpResponse("ok")


@untagged
@cache_control(public=True, max_age=60)
def opted_out(request):
    response = HttpResponse("ok")
    response["Cache-Tag"] = "runtime"  # what tag_response() would do
    return response


@cache_control(public=True, max_age=60)
@untagged
def opted_out_inside(request):
    return HttpResponse("ok")


@method_decorator(PUBLIC, name="dispatch")
class PublicView(View):
    def get(self, request):
        return HttpResponse("ok")


@cache_tags("x")
@method_decorator(PUBLIC, name="dispatch")
class PublicTaggedView(View):
    def get(self, request):
        return HttpResponse("ok")


@method_decorator(PUBLIC, name="dispatch")
class PublicTaggedGetView(View):
    @method_decorator(cache_tags("x"))
    def get(self, request):
        return HttpResponse("ok")


@method_decorator([never_cache, PUBLIC], name="dispatch")
class NeverView(View):
    def get(self, request):
        return HttpResponse("ok")


class CachePageGetView(View):
    @method_decorator(cache_page(60))
    def get(self, request):
        return HttpResponse("ok")


@untagged
@method_decorator(PUBLIC, name="dispatch")
class OptedOutView(View):
    def get(self, request):
        return HttpResponse("ok")


class CallableView:
    """A callable object as a view: nothing to inspect, no warning."""

    def __call__(self, request):
        return HttpResponse("ok")
