"""Cache tags on responses: ``@cache_tags`` and ``tag_response``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote

from django.db.models import Model, QuerySet

from .client import validate_tag

HEADER = "Cache-Tag"

#: Attribute set by :func:`cache_tags` on the wrappers it returns (a tuple of tags).
MARKER = "bext_cache_tags"
#: Attribute set by :func:`untagged` (``True``).
UNTAGGED = "bext_untagged"

F = TypeVar("F", bound=Callable[..., Any])


def model_tag(model: type[Model] | Model) -> str:
    """``app_label.model`` for a model class or instance (proxy models use
    their concrete model, so a proxy and its base share tags)."""
    cls: Any = model if isinstance(model, type) else type(model)
    return str(cls._meta.concrete_model._meta.label_lower)


def instance_tag(instance: Model) -> str:
    """``app_label.model:pk``; the pk is percent-encoded so that any pk gives
    a valid tag (integers and UUIDs are unchanged)."""
    if instance.pk is None:
        raise ValueError(f"cannot tag unsaved {type(instance).__name__} instance (pk is None)")
    return pk_tag(instance, instance.pk)


def pk_tag(model: type[Model] | Model, pk: Any) -> str:
    """:func:`instance_tag` from a model and a primary key, without building an instance."""
    return f"{model_tag(model)}:{quote(str(pk), safe='')}"


def tags_for(*items: Any) -> list[str]:
    """Tags for strings, model classes, querysets and instances (or iterables
    of those), deduplicated in order.

    - ``"products"``            -> ``"products"`` (validated)
    - ``Product`` / queryset    -> ``"shop.product"`` (the queryset is not evaluated)
    - ``product`` (instance)    -> ``"shop.product:42"``
    - ``[p1, p2]``              -> ``"shop.product:1"``, ``"shop.product:2"``
    """
    out: list[str] = []

    def add(item: Any) -> None:
        if isinstance(item, str):
            out.append(validate_tag(item))
        elif isinstance(item, type) and issubclass(item, Model):
            out.append(model_tag(item))
        elif isinstance(item, Model):
            out.append(instance_tag(item))
        elif isinstance(item, QuerySet):
            out.append(model_tag(item.model))
        elif isinstance(item, Iterable) and not isinstance(item, bytes | bytearray | dict):
            for sub in item:
                add(sub)
        else:
            raise ValueError(f"cannot derive a cache tag from {type(item).__name__}: {item!r}")

    for item in items:
        add(item)
    return list(dict.fromkeys(out))


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [t.strip() for t in value.split(",") if t.strip()]


def add_tags(response: Any, tags: Iterable[str]) -> Any:
    """Merge ``tags`` into the response's ``Cache-Tag`` header (order kept,
    duplicates dropped) and return the response."""
    merged = list(dict.fromkeys([*_split(response.headers.get(HEADER)), *tags]))
    if merged:
        response.headers[HEADER] = ", ".join(merged)
    return response


def tag_response(response: Any, *items: Any) -> Any:
    """Add the tags of ``items`` (see :func:`tags_for`) to ``response``."""
    return add_tags(response, tags_for(*items))


def get_tags(response: Any) -> list[str]:
    """The tags currently on ``response``."""
    return _split(response.headers.get(HEADER))


def cache_tags(*items: Any) -> Callable[[F], F]:
    """Decorator adding cache tags to whatever a view returns.

    Works on sync and async function views, on view methods (``get``,
    ``dispatch`` ...; sync or async) and on class-based views themselves
    (``@cache_tags("products")`` on a ``View`` subclass wraps its
    ``dispatch``).  Tags are computed once, at decoration time, from strings or
    model classes; use :func:`tag_response` in the view for instance tags.

    The wrapper it returns carries the marker attribute ``bext_cache_tags``
    (:data:`MARKER`): a tuple of the tags it adds, merged with those of an
    inner ``@cache_tags``.  ``functools.wraps`` copies it onto outer wrappers
    and ``View.as_view()`` onto the view function; the ``django_bext.W005``
    system check looks for it.
    """
    tags = tags_for(*items)
    if not tags:
        raise ValueError("cache_tags() needs at least one tag")

    async def _await_and_tag(awaitable: Any) -> Any:
        return add_tags(await awaitable, tags)

    def decorator(view: F) -> F:
        if isinstance(view, type):
            original = view.__dict__.get("dispatch") or view.dispatch  # type: ignore[attr-defined]
            view.dispatch = decorator(original)  # type: ignore[attr-defined]
            return view
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return add_tags(await view(*args, **kwargs), tags)

            return _mark(async_wrapper, view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            response = view(*args, **kwargs)
            if inspect.isawaitable(response):  # e.g. View.dispatch of an async view
                return _await_and_tag(response)
            return add_tags(response, tags)

        return _mark(wrapper, view)

    def _mark(wrapper: Any, view: F) -> F:
        inner = getattr(view, MARKER, None)
        inner = tuple(inner) if isinstance(inner, tuple | list) else ()
        setattr(wrapper, MARKER, tuple(dict.fromkeys([*inner, *tags])))
        return wrapper  # type: ignore[no-any-return]

    return decorator


def untagged(view: F) -> F:
    """Mark a view (function, view method or class-based view) as cached
    without static tags on purpose, silencing the ``django_bext.W005`` system
    check for it.

    Use it on views that tag their responses at runtime with
    :func:`tag_response` (which the check cannot see), or whose pages may
    only be purged by URL.  Sets ``bext_untagged = True`` (:data:`UNTAGGED`)
    on the view and returns it unchanged; it does not alter responses.
    """
    setattr(view, UNTAGGED, True)
    return view


#: Alias for use on methods of class-based views; ``cache_tags`` works there too.
method_cache_tags = cache_tags
