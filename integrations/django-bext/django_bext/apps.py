from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger("django_bext")


class DjangoBextConfig(AppConfig):
    name = "django_bext"
    verbose_name = "bext edge server"
    default = True

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            conf,
        )
        from .signals import register

        auto = conf.get("BEXT_AUTO_INVALIDATE")
        if isinstance(auto, list | tuple | set | frozenset):
            for label in auto:
                try:
                    register(label)
                except (ValueError, TypeError) as exc:
                    # reported by the django_bext.W004 system check
                    logger.warning("BEXT_AUTO_INVALIDATE: %s", exc)
