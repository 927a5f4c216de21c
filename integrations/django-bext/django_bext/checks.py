"""System checks of django-bext; they only ever warn."""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import CodeType, FunctionType, MethodType
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import Tags, Warning, register

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


# --- django_bext.W005: cached views without cache tags ---------------------------------------

#: Upper bound on the callables inspected per view (wrapper chains are short);
#: beyond it the view's status is "unknown".
_MAX_NODES = 200
#: View-class methods inspected besides what ``as_view()`` returns.
_VIEW_METHODS = ("dispatch", "get", "head")


@dataclass
class ViewCaching:
    """What :func:`inspect_view` found out about a view (statically)."""

    #: ``@cache_control(public=True, max_age|s_maxage > 0)`` seen
    public: bool = False
    #: ``@cache_page(timeout > 0)`` (or the ``CacheMiddleware`` decorator) seen
    cache_page: bool = False
    #: ``never_cache`` or ``cache_control(private|no_store|no_cache=...)`` seen
    uncacheable: bool = False
    #: wrapped by ``@cache_tags`` / ``@method_cache_tags``
    tagged: bool = False
    #: marked ``@untagged``
    untagged_ok: bool = False
    #: the caching decorators seen, for the warning message
    reasons: list[str] = field(default_factory=list)

    @property
    def cached(self) -> bool:
        return (self.public or self.cache_page) and not self.uncacheable

    @property
    def needs_tags(self) -> bool:
        return self.cached and not self.tagged and not self.untagged_ok


@functools.cache
def _django_codes() -> dict[str, frozenset[CodeType]]:
    """Code objects of Django's cache decorators' inner functions, obtained by
    decorating dummies: comparing code objects identifies a wrapper exactly,
    whatever name, module or ``__dict__`` ``functools.wraps`` gave it."""
    from django.views.decorators.cache import cache_control, never_cache

    def sync_view(request: Any) -> Any:  # pragma: no cover - never called
        return None

    async def async_view(request: Any) -> Any:  # pragma: no cover - never called
        return None

    views = (sync_view, async_view)
    return {
        # the wrapper around the view; its closure holds the kwargs dict
        "cache_control": frozenset(cache_control()(v).__code__ for v in views),
        # the decorator itself, as kept by method_decorator(cache_control(...))
        "cache_control_decorator": frozenset({cache_control().__code__}),
        "never_cache": frozenset(never_cache(v).__code__ for v in views),
    }


def _closure(obj: Any) -> dict[str, Any]:
    """A function's free variables by name (empty cells skipped)."""
    code = getattr(obj, "__code__", None)
    cells = getattr(obj, "__closure__", None)
    if not isinstance(code, CodeType) or not cells:
        return {}
    out: dict[str, Any] = {}
    for name, cell in zip(code.co_freevars, cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # empty cell
            continue
    return out


def _positive(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _callables(root: Any) -> Iterator[Any]:
    """Every object reachable from a view callback through ``__wrapped__``,
    ``functools.partial.func``, bound methods' ``__func__``, ``view_class``
    (then its ``dispatch``/``get``/``head``) and closure cells holding
    functions (or lists/tuples of them, as ``method_decorator`` keeps its
    decorators).  Classes are only entered through ``view_class``.  Raises
    ``RecursionError`` past ``_MAX_NODES`` objects."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        if len(seen) >= _MAX_NODES:
            raise RecursionError(f"more than {_MAX_NODES} callables behind {root!r}")
        seen.add(id(obj))
        yield obj
        if isinstance(obj, type):
            stack.extend(getattr(obj, name, None) for name in _VIEW_METHODS)
            continue
        if isinstance(obj, functools.partial):
            stack.append(obj.func)
        if isinstance(obj, MethodType | staticmethod | classmethod):
            stack.append(obj.__func__)
        view_class = getattr(obj, "view_class", None)
        if isinstance(view_class, type):
            stack.append(view_class)
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            stack.append(wrapped)
        for value in _closure(obj).values():
            items = value if isinstance(value, list | tuple) else (value,)
            stack.extend(
                item
                for item in items
                if isinstance(item, FunctionType | MethodType | functools.partial)
            )


def _cache_control(info: ViewCaching, kwargs: Any) -> None:
    if not isinstance(kwargs, dict):
        return
    if any(kwargs.get(k) for k in ("private", "no_store", "no_cache")):
        info.uncacheable = True
    elif kwargs.get("public") and any(_positive(kwargs.get(k)) for k in ("max_age", "s_maxage")):
        info.public = True
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        info.reasons.append(f"@cache_control({args})")


def inspect_view(view: Any) -> ViewCaching | None:
    """Find out statically whether ``view`` (a URL pattern's callback) is
    cached by Django's cache decorators and whether it carries cache tags.

    Django's decorators keep no public metadata, so this walks the wrapper
    chain (:func:`_callables`) and recognises:

    - ``cache_control(**kw)``: its wrapper's closure holds the ``kw`` dict
      (and, under ``method_decorator``, the un-applied decorator's does);
    - ``cache_page(t)``: ``decorator_from_middleware_with_args(CacheMiddleware)``,
      whose wrapper's closure holds the ``CacheMiddleware`` instance (its
      ``page_timeout``, else ``cache_timeout``, must be > 0), or, under
      ``method_decorator``, the decorator whose closure holds the middleware
      class and its ``m_kwargs``;
    - ``never_cache``, which makes the view uncacheable;
    - django_bext's ``bext_cache_tags`` marker (set by :func:`cache_tags`)
      and ``bext_untagged`` (set by :func:`untagged`).

    The facts of all the callables found are merged, whatever their order.
    Returns ``None`` when anything unexpected happens ("unknown").
    """
    try:
        from django.middleware.cache import UpdateCacheMiddleware
        from django.views.decorators.cache import never_cache

        from .tags import MARKER, UNTAGGED

        codes = _django_codes()
        info = ViewCaching()
        for obj in _callables(view):
            if getattr(obj, MARKER, None):
                info.tagged = True
            if getattr(obj, UNTAGGED, False) is True:
                info.untagged_ok = True
            if obj is never_cache:
                info.uncacheable = True
                continue
            code = getattr(obj, "__code__", None)
            if not isinstance(code, CodeType):
                continue
            cells = _closure(obj)
            if code in codes["never_cache"]:
                info.uncacheable = True
            elif code in codes["cache_control"] or code in codes["cache_control_decorator"]:
                _cache_control(info, cells.get("kwargs"))
            for value in cells.values():
                if isinstance(value, UpdateCacheMiddleware):  # cache_page, applied
                    timeout = value.page_timeout
                    if timeout is None:
                        timeout = getattr(value, "cache_timeout", None)
                    if _positive(timeout):
                        info.cache_page = True
                        info.reasons.append(f"@cache_page({timeout!r})")
            middleware_class = cells.get("middleware_class")
            if isinstance(middleware_class, type) and issubclass(
                middleware_class, UpdateCacheMiddleware
            ):  # cache_page, not applied yet (method_decorator keeps it)
                m_kwargs = cells.get("m_kwargs")
                timeout = m_kwargs.get("page_timeout") if isinstance(m_kwargs, dict) else None
                if timeout is None or _positive(timeout):
                    info.cache_page = True
                    info.reasons.append(f"@cache_page({timeout!r})")
        return info
    except Exception:
        return None


def _url_patterns(resolver: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(route, URLPattern)`` for every pattern of ``resolver``, recursively
    through ``include()``; an include that fails to load is skipped."""
    try:
        patterns = list(resolver.url_patterns)
    except Exception:
        return
    for entry in patterns:
        try:
            route = prefix + str(entry.pattern)
        except Exception:
            continue
        if hasattr(entry, "url_patterns"):  # URLResolver (include)
            yield from _url_patterns(entry, route)
        elif hasattr(entry, "callback"):
            yield route, entry


def _view_path(pattern: Any) -> str:
    try:
        return str(pattern.lookup_str)
    except Exception:
        return repr(pattern.callback)


@register(TAG, Tags.urls)
def check_untagged_views(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """``django_bext.W005``: a view cached by ``@cache_control(public=True,
    max_age=...)`` or ``@cache_page`` without ``@cache_tags`` can only be
    purged by URL or all at once.  Off with ``BEXT_CHECK_UNTAGGED = False``."""
    try:
        if not conf.get("BEXT_CHECK_UNTAGGED"):
            return []
        from django.urls import get_resolver

        patterns = list(_url_patterns(get_resolver()))
    except Exception:  # a broken URLconf is reported by Django's own checks
        return []
    warnings: list[Warning] = []
    reported: set[tuple[str, str]] = set()
    for route, pattern in patterns:
        info = inspect_view(getattr(pattern, "callback", None))
        if info is None or not info.needs_tags:
            continue
        view = _view_path(pattern)
        if (route, view) in reported:
            continue
        reported.add((route, view))
        warnings.append(
            Warning(
                f"View {view} (URL pattern {route!r}) is cached "
                f"({', '.join(dict.fromkeys(info.reasons))}) but sets no cache tags, so its "
                "pages can only be invalidated by URL or by purging everything.",
                hint="Decorate it with @cache_tags(...) (django_bext; method_cache_tags on a "
                "view method), or call tag_response() in the view and mark it with "
                "@django_bext.untagged.  BEXT_CHECK_UNTAGGED = False turns this check off.",
                id="django_bext.W005",
            )
        )
    return warnings
