"""System checks of django-bext; they only ever warn."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import Warning, register

from . import conf

TAG = "django_bext"


def _parse_admin_url() -> tuple[str, int] | None:
    try:
        parts = urlsplit(str(conf.get("BEXT_ADMIN_URL")))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except (TypeError, ValueError):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    return parts.hostname, port


@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings: list[Warning] = []
    url = conf.get("BEXT_ADMIN_URL")
    target = _parse_admin_url()
    if target is None:
        warnings.append(
            Warning(
                f"BEXT_ADMIN_URL is not a valid http(s) URL: {url!r}",
                hint="Use e.g. 'http://127.0.0.1:3000' (scheme, host and optional port; no "
                "query, fragment or credentials: use BEXT_ADMIN_TOKEN for auth).",
                id="django_bext.W001",
            )
        )
    timeout = conf.get("BEXT_TIMEOUT")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        warnings.append(
            Warning(
                f"BEXT_TIMEOUT must be a positive number of seconds, got {timeout!r}",
                hint="The default, 2 seconds, is used instead.",
                id="django_bext.W003",
            )
        )
    auto = conf.get("BEXT_AUTO_INVALIDATE")
    if isinstance(auto, str) or not isinstance(auto, list | tuple | set | frozenset):
        warnings.append(
            Warning(
                f"BEXT_AUTO_INVALIDATE must be a list of 'app_label.Model' strings, got {auto!r}",
                id="django_bext.W004",
            )
        )
    else:
        from django.apps import apps

        for label in auto:
            try:
                apps.get_model(label)
            except (LookupError, ValueError, TypeError, AttributeError):
                warnings.append(
                    Warning(
                        f"BEXT_AUTO_INVALIDATE names an unknown model: {label!r}",
                        id="django_bext.W004",
                    )
                )
    if target is not None and conf.get("BEXT_CHECK_REACHABLE"):
        host, port = target
        try:
            with socket.create_connection((host, port), timeout=conf.timeout()):
                pass
        except OSError as exc:
            warnings.append(
                Warning(
                    f"bext admin endpoint {url} is unreachable: {exc}",
                    hint="Cache invalidations will be logged and dropped until bext is up.",
                    id="django_bext.W002",
                )
            )
    return warnings
