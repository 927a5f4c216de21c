"""Settings of django-bext, read lazily so tests can override them."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "BEXT_ADMIN_URL": "http://127.0.0.1:3000",
    "BEXT_ADMIN_TOKEN": None,
    "BEXT_TIMEOUT": 2.0,
    "BEXT_ENABLED": True,
    "BEXT_AUTO_INVALIDATE": [],
    "BEXT_CHECK_REACHABLE": False,
    "BEXT_CHECK_UNTAGGED": True,
}

INVALIDATE_PATH = "/__bext/cache/invalidate"


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def admin_url() -> str:
    return str(get("BEXT_ADMIN_URL") or DEFAULTS["BEXT_ADMIN_URL"])


def admin_token() -> str | None:
    token = get("BEXT_ADMIN_TOKEN")
    return str(token) if token else None


def timeout() -> float:
    try:
        value = float(get("BEXT_TIMEOUT"))
    except (TypeError, ValueError):
        return float(DEFAULTS["BEXT_TIMEOUT"])
    return value if value > 0 else float(DEFAULTS["BEXT_TIMEOUT"])


def enabled() -> bool:
    return bool(get("BEXT_ENABLED"))
