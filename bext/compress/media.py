"""Which ``Content-Type`` values ``[compression] types`` allows.

``types`` holds media ranges: exact types (``application/json``) and ``type/*``. One
exception to the ranges: ``text/event-stream`` is compressed only when listed exactly, never
through ``text/*``. An SSE connection stays open for minutes or hours carrying small events;
compressing it pins a compressor per connection (gzip ~256 KiB, brotli ~1 MiB) for its
whole life and adds flush framing to every event, which eats most of the gain on small
events, and some intermediaries hold compressed streams back. nginx compresses SSE only
when told to; so does bext: list ``"text/event-stream"`` to opt in (each event is then
flushed as it comes, like every proxied chunk).
"""

from __future__ import annotations

from collections.abc import Iterable

EVENT_STREAM = "text/event-stream"
_MEMO_LIMIT = 256


class TypeMatcher:
    """Answers "is this Content-Type compressible?", memoised per header value.

    An application uses a few dozen distinct Content-Type values, so the memo stays small;
    it is cleared when an odd upstream sends many distinct ones.
    """

    __slots__ = ("_exact", "_memo", "_prefixes")

    def __init__(self, ranges: Iterable[str]) -> None:
        self._exact: frozenset[str] = frozenset(r.lower() for r in ranges if not r.endswith("/*"))
        self._prefixes: tuple[str, ...] = tuple(r[:-1].lower() for r in ranges if r.endswith("/*"))
        self._memo: dict[bytes, bool] = {}

    def allows(self, content_type: bytes | None) -> bool:
        """Whether a response with this ``Content-Type`` value (or none) may be compressed.

        A response without Content-Type is left alone: its bytes could be anything.
        """
        if content_type is None:
            return False
        known = self._memo.get(content_type)
        if known is None:
            known = self._match(media_type(content_type))
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[content_type] = known
        return known

    def _match(self, media: str) -> bool:
        if media in self._exact:
            return True
        if media == EVENT_STREAM or "/" not in media:
            return False
        return media.startswith(self._prefixes) or "*/" in self._prefixes


def media_type(content_type: bytes) -> str:
    """``b"Text/HTML; charset=utf-8"`` -> ``"text/html"``."""
    return content_type.split(b";", 1)[0].strip().decode("latin-1").lower()
