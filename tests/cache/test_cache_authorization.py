from __future__ import annotations

import pytest

from bext.cache.authorization import has_authorization, reusable_with_authorization
from bext.cache.directives import CacheControl


def test_has_authorization() -> None:
    assert has_authorization([(b"authorization", b"Bearer t")])
    assert has_authorization([(b"Authorization", b"")])
    assert not has_authorization([(b"proxy-authorization", b"Basic x")])
    assert not has_authorization([])


@pytest.mark.parametrize(
    ("cc", "allowed"),
    [
        (CacheControl(), False),
        (CacheControl(max_age=60), False),
        (CacheControl(proxy_revalidate=True), False),
        (CacheControl(public=True), True),
        (CacheControl(s_maxage=0), True),
        (CacheControl(must_revalidate=True), True),
    ],
)
def test_reusable_with_authorization(cc: CacheControl, allowed: bool) -> None:
    assert reusable_with_authorization(cc) is allowed
