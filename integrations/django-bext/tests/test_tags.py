import asyncio

import pytest
from django.http import HttpResponse
from django.test import AsyncRequestFactory, RequestFactory
from django.utils.decorators import method_decorator
from django.views import View

from bext_testapp.models import Category, Product
from django_bext import cache_tags, get_tags, method_cache_tags, tag_response, tags_for

rf = RequestFactory()
arf = AsyncRequestFactory()


def test_sync_view_gets_header():
    @cache_tags("products", Product)
    def view(request):
        return HttpResponse("ok")

    response = view(rf.get("/"))
    assert response["Cache-Tag"] == "products, bext_testapp.product"


def test_sync_view_merges_existing_header():
    @cache_tags("products", "home")
    def view(request):
        response = HttpResponse("ok")
        response["Cache-Tag"] = "home,  extra"
        return response

    assert view(rf.get("/"))["Cache-Tag"] == "home, extra, products"


def test_async_view_gets_header():
    @cache_tags("products")
    async def view(request):
        response = HttpResponse("ok")
        response["Cache-Tag"] = "page"
        return response

    assert asyncio.iscoroutinefunction(view)
    response = asyncio.run(view(arf.get("/")))
    assert response["Cache-Tag"] == "page, products"


def test_stacked_decorators_merge():
    @cache_tags("a")
    @cache_tags("b", "a")
    def view(request):
        return HttpResponse("ok")

    assert get_tags(view(rf.get("/"))) == ["b", "a"]


def test_method_decorator_on_sync_and_async_class_views():
    class SyncView(View):
        @method_cache_tags("list")
        def get(self, request):
            return HttpResponse("ok")

    class AsyncView(View):
        @cache_tags("alist")
        async def get(self, request):
            return HttpResponse("ok")

    @method_decorator(cache_tags("dispatched"), name="dispatch")
    class DjangoStyle(View):
        def get(self, request):
            return HttpResponse("ok")

    assert SyncView.as_view()(rf.get("/"))["Cache-Tag"] == "list"
    assert asyncio.run(AsyncView.as_view()(arf.get("/")))["Cache-Tag"] == "alist"
    assert DjangoStyle.as_view()(rf.get("/"))["Cache-Tag"] == "dispatched"


def test_class_decorator_wraps_dispatch_sync_and_async():
    @cache_tags("cls")
    class SyncView(View):
        def get(self, request):
            response = HttpResponse("ok")
            return tag_response(response, "inner")

    @cache_tags("acls")
    class AsyncView(View):
        async def get(self, request):
            return HttpResponse("ok")

    assert SyncView.as_view()(rf.get("/"))["Cache-Tag"] == "inner, cls"
    assert asyncio.run(AsyncView.as_view()(arf.get("/")))["Cache-Tag"] == "acls"
    # the base class is untouched
    assert View.dispatch is not SyncView.dispatch
    assert getattr(View.dispatch, "__wrapped__", None) is None


def test_decorator_rejects_bad_tags_at_definition():
    with pytest.raises(ValueError):
        cache_tags("a b")
    with pytest.raises(ValueError):
        cache_tags()


def test_tags_for_models_querysets_instances():
    p1, p2 = Product(pk=1, name="a"), Product(pk=2, name="b")
    assert tags_for(Product) == ["bext_testapp.product"]
    assert tags_for(Product.objects.filter(name="x")) == ["bext_testapp.product"]
    assert tags_for(p1) == ["bext_testapp.product:1"]
    assert tags_for("home", [p1, p2], Category, p1) == [
        "home",
        "bext_testapp.product:1",
        "bext_testapp.product:2",
        "bext_testapp.category",
    ]
    assert tags_for(Product(pk="a b,c")) == ["bext_testapp.product:a%20b%2Cc"]


def test_tags_for_rejects_unsaved_and_junk():
    with pytest.raises(ValueError):
        tags_for(Product(name="unsaved"))
    with pytest.raises(ValueError):
        tags_for(3.5)
    with pytest.raises(ValueError):
        tags_for("bad,tag")


def test_tag_response_sets_and_merges():
    response = HttpResponse("ok")
    assert tag_response(response, Product, Product(pk=7)) is response
    assert response["Cache-Tag"] == "bext_testapp.product, bext_testapp.product:7"
    tag_response(response, Product.objects.all(), "extra")
    assert response["Cache-Tag"] == "bext_testapp.product, bext_testapp.product:7, extra"
    assert get_tags(response) == ["bext_testapp.product", "bext_testapp.product:7", "extra"]
