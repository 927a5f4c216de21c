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
