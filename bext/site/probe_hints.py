"""`bext check`'s hints about health probes the app is likely to refuse.

An active check that the app answers with ``400`` marks a healthy server down. bext then
fails open (requests still reach it, and the master logs it), but the checks no longer
tell a live server from a dead one. The classic case is Django: a probe's ``Host`` that is
not in ``ALLOWED_HOSTS`` gets ``400 Bad Request``.

These are hints, not errors, and they say how sure they are: when the project's settings
list ``ALLOWED_HOSTS`` literally (read with `ast`, never imported), the probe host is
checked the way Django checks it; when they do not (read from the environment, say), a
probe of ``/`` without an explicit ``host`` gets a softer "may". A probe whose
``expect_status`` accepts 4xx answers, or that targets another path of a project that
does not list its hosts, gets no hint.
"""

from __future__ import annotations

from pathlib import Path

from bext.config.schema import Config, UpstreamConfig
from bext.master.health import probe_host
from bext.site.django_settings import DjangoSettings, read_settings

DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")
"""What Django allows when ``DEBUG`` is on and ``ALLOWED_HOSTS`` is empty."""


def probe_hints(config: Config) -> list[str]:
    """One line per upstream whose probe the app is likely to answer with ``400``."""
    django: DjangoSettings | None = None
    looked = False
    hints: list[str] = []
    for upstream in config.upstreams:
        health = upstream.health
        low, high = health.expect_status
        if not health.enabled or low <= 400 <= high:
            continue  # off, or a 400 counts as a pass anyway
        if not looked:
            looked = True
            django = _django_settings(config.server.app_dir)
        hint = _hint(config, upstream, django)
        if hint:
            hints.append(f"upstreams.{upstream.name}.health: {hint}")
    return hints


def _django_settings(app_dir: Path) -> DjangoSettings | None:
    if not (app_dir / "manage.py").is_file():
        return None
    try:
        return read_settings(app_dir)
    except (OSError, ValueError, RecursionError):
        return None


def _hint(config: Config, upstream: UpstreamConfig, django: DjangoSettings | None) -> str:
    health = upstream.health
    host = probe_host(config, upstream)
    fix = (
        f'set host = "<a name the app serves>" in [upstreams.{upstream.name}.health], or '
        "probe a view that answers before the host check (the starter's /health does)"
    )
    allowed = _allowed(django) if django is not None else None
    if allowed is not None and django is not None:
        if host_allowed(host, allowed):
            return ""
        where = django.allowed_hosts_file.name if django.allowed_hosts_file else "the settings"
        shown = ", ".join(allowed) if allowed else "nothing"
        return (
            f"hint: the probe sends Host: {host}, which ALLOWED_HOSTS in {where} ({shown}) "
            "does not seem to allow; Django would answer it with 400, so the server would "
            f"be marked down (bext fails open and logs it, but the checks then mean "
            f"nothing); {fix}"
        )
    if health.path != "/" or health.host is not None:
        return ""
    app = "Django (ALLOWED_HOSTS)" if django is not None else "an app that checks hosts"
    return (
        f"hint: the probe is GET / with Host: {host}; {app} may answer that with 400 "
        f"(or / may need a login or not exist), and the server would be marked down "
        f"(bext fails open and logs it); {fix}"
    )


def _allowed(django: DjangoSettings) -> list[str] | None:
    """The host patterns Django would accept, or None when the settings do not say."""
    hosts = django.allowed_hosts
    if hosts is None:
        return None
    if hosts:
        return hosts
    if django.debug is None:
        return None  # empty: allows localhost under DEBUG, nothing otherwise
    return list(DEBUG_HOSTS) if django.debug else []


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Django's ``validate_host``: ``*``, ``.example.com`` (the domain and below), exact."""
    name = host.lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    name = name.removesuffix(".")
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*":
            return True
        if pattern.startswith(".") and (name.endswith(pattern) or name == pattern[1:]):
            return True
        if name == pattern:
            return True
    return False
