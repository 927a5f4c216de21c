"""Django integration for the bext edge server.

See README.md for the settings and the API.
"""

from __future__ import annotations

from typing import Any

from .client import InvalidationResult, ainvalidate, build_payload, invalidate, validate_tag

__version__ = "0.1.0"

__all__ = [
    "InvalidationResult",
    "ainvalidate",
    "build_payload",
    "cache_tags",
    "get_tags",
    "instance_tag",
    "invalidate",
    "method_cache_tags",
    "model_tag",
    "queue_tags",
    "register",
    "registered_models",
    "tag_response",
    "tags_for",
    "unregister",
    "untagged",
    "validate_tag",
]

_LAZY = {
    # these import django.db.models, which must wait for settings
    "cache_tags": "tags",
    "method_cache_tags": "tags",
    "tag_response": "tags",
    "tags_for": "tags",
    "get_tags": "tags",
    "untagged": "tags",
    "model_tag": "tags",
    "instance_tag": "tags",
    "register": "signals",
    "unregister": "signals",
    "registered_models": "signals",
    "queue_tags": "signals",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_bext' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
