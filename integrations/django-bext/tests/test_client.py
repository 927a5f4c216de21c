import asyncio
import logging
import time

import pytest

from django_bext import InvalidationResult, ainvalidate, build_payload, invalidate


def test_sync_sends_tags_json_and_no_auth_without_token(bext):
    result = invalidate(tags=["products", "shop.product:1"])
    assert result == InvalidationResult(ok=True, status=200, detail=bext.body.decode())
    assert result.data == {"ok": True, "invalidated": 0}
    [req] = bext.requests
    assert req["path"] == "/__bext/cache/invalidate"
    assert req["json"] == {"tags": ["products", "shop.product:1"]}
    assert req["headers"]["content-type"] == "application/json"
    assert "authorization" not in req["headers"]


def test_sync_bearer_token_and_all_kinds(bext, settings_override):
    settings_override(BEXT_ADMIN_TOKEN="s3cret")
    assert invalidate(urls=["/products/1", "https://example.com/a?b=1"], soft=True).ok
    assert invalidate(prefixes="/products/").ok
    assert invalidate(all=True).ok
    bodies = [r["json"] for r in bext.requests]
    assert bodies == [
        {"urls": ["/products/1", "https://example.com/a?b=1"], "soft": True},
        {"prefixes": ["/products/"]},
        {"all": True},
    ]
    assert {r["headers"]["authorization"] for r in bext.requests} == {"Bearer s3cret"}


def test_admin_url_with_path_prefix(bext, settings_override):
    settings_override(BEXT_ADMIN_URL=bext.url + "/edge/")
    assert invalidate(tags="x").ok
    assert bext.requests[0]["path"] == "/edge/__bext/cache/invalidate"


def test_async_sends_tags_json_and_token(bext, settings_override):
    settings_override(BEXT_ADMIN_TOKEN="tok")
    result = asyncio.run(ainvalidate(tags=["products"], soft=True))
    assert result.ok and result.status == 200
    assert result.data == {"ok": True, "invalidated": 0}
    [req] = bext.requests
    assert req["path"] == "/__bext/cache/invalidate"
    assert req["json"] == {"tags": ["products"], "soft": True}
    assert req["headers"]["authorization"] == "Bearer tok"
    assert req["headers"]["host"] == bext.url.removeprefix("http://")


def test_async_concurrent_calls(bext):
    async def main():
        return await asyncio.gather(*(ainvalidate(tags=[f"t{i}"]) for i in range(10)))

    results = asyncio.run(main())
    assert all(r.ok for r in results)
    assert sorted(r["json"]["tags"][0] for r in bext.requests) == sorted(f"t{i}" for i in range(10))


def test_duplicates_are_dropped_in_order():
    assert build_payload(tags=["b", "a", "b"]) == {"tags": ["b", "a"]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"tags": []},
        {"tags": [""]},
        {"tags": ["a,b"]},
        {"tags": ["a b"]},
        {"tags": ["tab\t"]},
        {"tags": ["caf\u00e9"]},
        {"tags": [42]},
        {"tags": ["x" * 1025]},
        {"tags": b"bytes"},
        {"tags": 5},
        {"urls": ["products/1"]},
        {"urls": ["ftp://x/y"]},
        {"urls": ["/a b"]},
        {"prefixes": [""]},
        {"all": True, "tags": ["x"]},
        {"all": "yes"},
        {"tags": ["x"], "soft": 1},
    ],
)
def test_bad_arguments_raise_before_any_request(bext, kwargs):
    with pytest.raises(ValueError):
        invalidate(**kwargs)
    with pytest.raises(ValueError):
        asyncio.run(ainvalidate(**kwargs))
    assert bext.requests == []


def test_400_is_reported_not_raised(bext, caplog):
    bext.status = 400
    bext.body = b'{"error": "unknown field"}'
    with caplog.at_level(logging.WARNING, logger="django_bext"):
        result = invalidate(tags=["x"])
        aresult = asyncio.run(ainvalidate(tags=["x"]))
    for r in (result, aresult):
        assert not r.ok and r.status == 400
        assert r.data == {"error": "unknown field"}
    assert sum("HTTP 400" in rec.getMessage() for rec in caplog.records) == 2


def test_unreachable_logs_warning_and_fails(closed_port_url, settings_override, caplog):
    settings_override(BEXT_ADMIN_URL=closed_port_url, BEXT_TIMEOUT=1)
    with caplog.at_level(logging.WARNING, logger="django_bext"):
        start = time.monotonic()
        result = invalidate(tags=["x"])
        aresult = asyncio.run(ainvalidate(tags=["x"]))
        elapsed = time.monotonic() - start
    assert elapsed < 2
    for r in (result, aresult):
        assert r.ok is False and r.status is None and r.detail
        assert not r
    warnings = [rec for rec in caplog.records if rec.name == "django_bext"]
    assert len(warnings) == 2
    assert all(rec.levelno == logging.WARNING for rec in warnings)
    assert all("could not reach bext" in rec.getMessage() for rec in warnings)


def test_silent_server_times_out_within_bext_timeout(blackhole_url, settings_override, caplog):
    settings_override(BEXT_ADMIN_URL=blackhole_url, BEXT_TIMEOUT=0.3)
    with caplog.at_level(logging.WARNING, logger="django_bext"):
        start = time.monotonic()
        result = invalidate(tags=["x"])
        sync_elapsed = time.monotonic() - start
        start = time.monotonic()
        aresult = asyncio.run(ainvalidate(tags=["x"]))
        async_elapsed = time.monotonic() - start
    assert not result.ok and result.status is None
    assert not aresult.ok and aresult.status is None
    assert 0.25 < sync_elapsed < 1.5
    assert 0.25 < async_elapsed < 1.5
    assert len([r for r in caplog.records if r.name == "django_bext"]) == 2


def test_bad_admin_url_is_logged_not_raised(settings_override, caplog):
    settings_override(BEXT_ADMIN_URL="not a url")
    with caplog.at_level(logging.WARNING, logger="django_bext"):
        assert not invalidate(tags=["x"]).ok
        assert not asyncio.run(ainvalidate(tags=["x"])).ok
    assert len(caplog.records) == 2


def test_disabled_sends_nothing(bext, settings_override):
    settings_override(BEXT_ENABLED=False)
    assert invalidate(tags=["x"]).ok
    assert asyncio.run(ainvalidate(tags=["x"])).ok
    with pytest.raises(ValueError):
        invalidate(tags=["a,b"])
    assert bext.requests == []
