"""Automatic invalidation of model tags after the transaction commits.

For each registered model, ``post_save``, ``post_delete`` and ``m2m_changed``
queue the tags ``app_label.model`` and ``app_label.model:pk``; the queue is
sent with one :func:`~django_bext.invalidate` call from a
``transaction.on_commit`` callback, so a rollback sends nothing.

Batching: the tags of one transaction share one callback, and so one request.
Tags queued inside a savepoint (a nested ``atomic()``) get their own callback,
which Django drops if that savepoint is rolled back, so a partial rollback
invalidates nothing it should not.  Outside any transaction (autocommit), each
save is sent at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, router, transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

from .client import MAX_ITEMS, invalidate
from .tags import instance_tag, model_tag, pk_tag

logger = logging.getLogger("django_bext")

_registry: set[type[Model]] = set()
_DISPATCH_UID = "django_bext.auto_invalidate"


def _resolve(model: type[Model] | str) -> type[Model]:
    if isinstance(model, str):
        try:
            found: type[Model] = apps.get_model(model)
            return found
        except (LookupError, ValueError) as exc:
            raise ValueError(f"unknown model {model!r} for django_bext: {exc}") from exc
    if isinstance(model, type) and issubclass(model, Model):
        return model
    raise ValueError(f"expected a model class or 'app_label.Model', got {model!r}")


def register(*models: type[Model] | str) -> None:
    """Opt models in to automatic invalidation (classes or ``"app.Model"``).

    Idempotent.  Can also be used as a class decorator with one model.
    """
    for model in models:
        cls = _resolve(model)
        if cls._meta.abstract:
            raise ValueError(f"cannot register abstract model {cls.__name__}")
        _registry.add(cls)
        post_save.connect(_on_save, sender=cls, dispatch_uid=(_DISPATCH_UID, "save", cls))
        post_delete.connect(_on_delete, sender=cls, dispatch_uid=(_DISPATCH_UID, "delete", cls))
    m2m_changed.connect(_on_m2m, dispatch_uid=(_DISPATCH_UID, "m2m"))


def unregister(*models: type[Model] | str) -> None:
    """Undo :func:`register`."""
    for model in models:
        cls = _resolve(model)
        _registry.discard(cls)
        post_save.disconnect(sender=cls, dispatch_uid=(_DISPATCH_UID, "save", cls))
        post_delete.disconnect(sender=cls, dispatch_uid=(_DISPATCH_UID, "delete", cls))


def registered_models() -> frozenset[type[Model]]:
    return frozenset(_registry)


def is_registered(model: type[Model]) -> bool:
    return model in _registry or model._meta.concrete_model in _registry


class _Batch:
    """Tags waiting for one commit; the on_commit callback itself."""

    django_bext = True  # marker to find our callbacks in run_on_commit

    def __init__(self) -> None:
        self.tags: dict[str, None] = {}

    def __call__(self) -> None:
        tags, self.tags = list(self.tags), {}
        if not tags:
            return
        try:
            for start in range(0, len(tags), MAX_ITEMS):  # bext takes 1000 per request
                invalidate(tags=tags[start : start + MAX_ITEMS])
        except Exception:  # pragma: no cover - invalidate() does not raise for I/O
            logger.exception("django_bext failed to invalidate %s", tags)


def queue_tags(tags: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> None:
    """Send ``tags`` once the current transaction on ``using`` commits
    (immediately in autocommit mode), batched with other tags of the same
    transaction/savepoint."""
    tags = list(tags)
    if not tags:
        return
    connection = transaction.get_connection(using)
    if connection.in_atomic_block:
        current = set(connection.savepoint_ids)
        for entry in reversed(connection.run_on_commit):
            try:
                sids, func = entry[0], entry[1]
            except (TypeError, IndexError):  # pragma: no cover - unknown Django internals
                break
            if isinstance(func, _Batch) and set(sids) == current:
                func.tags.update(dict.fromkeys(tags))
                return
    batch = _Batch()
    batch.tags.update(dict.fromkeys(tags))
    transaction.on_commit(batch, using=using, robust=True)


def _tags(instance: Model) -> list[str]:
    tags = [model_tag(instance)]
    if instance.pk is not None:
        tags.append(instance_tag(instance))
    return tags


def _on_save(
    sender: type[Model],
    instance: Model,
    using: str = DEFAULT_DB_ALIAS,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    if raw:  # loaddata: leave fixtures alone
        return
    queue_tags(_tags(instance), using)


def _on_delete(
    sender: type[Model], instance: Model, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    queue_tags(_tags(instance), using)


def _on_m2m(
    sender: type[Model],
    instance: Model,
    action: str,
    model: type[Model],
    pk_set: set[Any] | None,
    using: str | None = None,
    **kwargs: Any,
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    tags: list[str] = []
    if is_registered(type(instance)):
        tags += _tags(instance)
    if is_registered(model):
        tags.append(model_tag(model))
        tags.extend(pk_tag(model, pk) for pk in pk_set or ())
    if tags:
        queue_tags(tags, using or router.db_for_write(type(instance), instance=instance))
