import pytest
from django.core.checks import Warning, run_checks

from django_bext.checks import check_settings


def ids(warnings):
    return [w.id for w in warnings]


def test_default_settings_are_clean():
    assert check_settings() == []


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:3000",
        "ftp://127.0.0.1",
        "http://",
        "not a url",
        "http://127.0.0.1:99999",
        "http://h/?q=1",
        None,
    ],
)
def test_bad_url_warns(settings_override, url):
    settings_override(BEXT_ADMIN_URL=url)
    warnings = check_settings()
    assert ids(warnings) == ["django_bext.W001"]
    assert all(isinstance(w, Warning) and not w.is_serious() for w in warnings)
    # also through Django's registry (the app config registers it)
    assert "django_bext.W001" in ids(run_checks(tags=["django_bext"]))


def test_unreachable_only_checked_when_asked(settings_override, closed_port_url):
    settings_override(BEXT_ADMIN_URL=closed_port_url)
    assert check_settings() == []
    settings_override(BEXT_CHECK_REACHABLE=True)
    assert ids(check_settings()) == ["django_bext.W002"]


def test_reachable(settings_override, bext):
    settings_override(BEXT_CHECK_REACHABLE=True)
    assert check_settings() == []


def test_bad_timeout_and_auto_invalidate(settings_override):
    settings_override(BEXT_TIMEOUT=0, BEXT_AUTO_INVALIDATE=["bext_testapp.Nope"])
    assert ids(check_settings()) == ["django_bext.W003", "django_bext.W004"]
    settings_override(BEXT_AUTO_INVALIDATE="bext_testapp.Product")
    assert "django_bext.W004" in ids(check_settings())


# --- django_bext.W005: cached views without cache tags ---------------------------------


def w005(settings_override, urlconf="bext_testapp.urls_cached", **settings):
    from django_bext.checks import check_untagged_views

    settings_override(ROOT_URLCONF=urlconf, **settings)
    warnings = check_untagged_views()
    assert all(w.id == "django_bext.W005" and not w.is_serious() for w in warnings)
    return warnings


def warned(warnings):
    """{route: message} of W005 warnings."""
    out = {}
    for w in warnings:
        route = w.msg.split("(URL pattern ")[1].split(")")[0].strip("'")
        out[route] = w.msg
    return out


V = "bext_testapp.cache_views."


def test_untagged_cached_views_warn(settings_override):
    found = warned(w005(settings_override))
    assert sorted(found) == sorted(
        [
            "public/",
            "async-public/",
            "cache-page/",
            "inline-cache-page/",
            "cbv/public/",
            "cbv/cache-page-get/",
            "shop/items/",
            "shop/deeper/page/",
            "^re/public/",
        ]
    )
    # the message names the view's dotted path and the decorator seen
    assert found["public/"].startswith(f"View {V}public_untagged (URL pattern 'public/')")
    assert "@cache_control(public=True, max_age=60)" in found["public/"]
    assert f"View {V}cache_page_untagged " in found["cache-page/"]
    assert "@cache_page(60)" in found["cache-page/"]
    assert f"View {V}plain " in found["inline-cache-page/"]
    assert f"View {V}PublicView " in found["cbv/public/"]
    assert f"View {V}CachePageGetView " in found["cbv/cache-page-get/"]
    assert f"View {V}public_untagged (URL pattern 'shop/items/')" in found["shop/items/"]


def test_w005_hint_and_registry(settings_override):
    warnings = w005(settings_override)
    assert "@cache_tags(" in warnings[0].hint and "tag_response()" in warnings[0].hint
    settings_override(ROOT_URLCONF="bext_testapp.urls_cached")
    assert "django_bext.W005" in ids(run_checks(tags=["django_bext"]))
    assert "django_bext.W005" in ids(run_checks(tags=["urls"]))


@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "tags_outside",
        "tags_inside",
        "cache_page_tagged",
        "cache_page_zero",
        "private",
        "public_no_cache",
        "public_without_max_age",
        "public_max_age_zero",
        "never",
        "never_over_cache_page",
        "opted_out",
        "opted_out_inside",
    ],
)
def test_function_views_without_warning(name):
    from bext_testapp import cache_views
    from django_bext.checks import inspect_view

    info = inspect_view(getattr(cache_views, name))
    assert info is not None and not info.needs_tags


@pytest.mark.parametrize(
    "name",
    ["PublicTaggedView", "PublicTaggedGetView", "NeverView", "OptedOutView"],
)
def test_class_views_without_warning(name):
    from bext_testapp import cache_views
    from django_bext.checks import inspect_view

    info = inspect_view(getattr(cache_views, name).as_view())
    assert info is not None and not info.needs_tags


def test_inspect_view_details():
    from bext_testapp import cache_views as v
    from django_bext.checks import inspect_view

    info = inspect_view(v.tags_inside)
    assert info is not None and info.cached and info.tagged and info.public
    info = inspect_view(v.opted_out)
    assert info is not None and info.cached and info.untagged_ok and not info.tagged
    info = inspect_view(v.never_over_cache_page)
    assert info is not None and info.cache_page and info.uncacheable and not info.cached
    assert inspect_view(v.CallableView()) == inspect_view(v.plain)
    # never raises: odd objects are "nothing found" or "unknown"
    for odd in (None, 42, "view", object()):
        info = inspect_view(odd)
        assert info is None or not info.needs_tags


def test_cache_tags_marker():
    from django_bext import cache_tags

    @cache_tags("a", "b")
    @cache_tags("b", "c")
    def view(request):
        raise AssertionError

    assert view.bext_cache_tags == ("b", "c", "a")


def test_w005_can_be_turned_off(settings_override):
    assert w005(settings_override)
    assert w005(settings_override, BEXT_CHECK_UNTAGGED=False) == []


def test_w005_never_raises_on_a_broken_urlconf(settings_override):
    assert w005(settings_override, urlconf="bext_testapp.urls_broken") == []
    assert w005(settings_override, urlconf="bext_testapp.no_such_urlconf") == []


def test_w005_default_urlconf_is_clean(settings_override):
    from django_bext.checks import check_untagged_views

    assert check_untagged_views() == []


def test_too_long_chain_is_unknown(monkeypatch):
    from bext_testapp import cache_views as v
    from django_bext import checks

    assert checks.inspect_view(v.public_untagged).needs_tags
    monkeypatch.setattr(checks, "_MAX_NODES", 1)
    assert checks.inspect_view(v.public_untagged) is None


def test_async_cache_tags_marker():
    from django_bext import cache_tags

    @cache_tags("a")
    async def view(request):
        raise AssertionError

    assert view.bext_cache_tags == ("a",)
