"""The ``render = "static"`` handler (stub until the static package lands)."""

from __future__ import annotations

from bext.config import Config
from bext.config.schema import RouteRule
from bext.handlers import Handler
from bext.handlers.unavailable import unavailable_handler


def static_handler(rule: RouteRule, config: Config, headers: list[tuple[bytes, bytes]]) -> Handler:
    """A handler serving files for ``rule``; ``headers`` are the rule's own (they win)."""
    return unavailable_handler("static file serving")
