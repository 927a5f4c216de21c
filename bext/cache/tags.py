"""Cache tags from ``Cache-Tag`` and ``Surrogate-Key``, and the edge-only response fields.

``Cache-Tag`` lists tags separated by commas (Cloudflare's form), ``Surrogate-Key`` by
spaces (Fastly's). Both name tags an invalidation can later target; neither, nor
``Surrogate-Control``, is meant for the client, so they are stripped before it sees the
response. Tags are bytes, case-sensitive, deduplicated in order and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from bext.cache._fields import field_lines
from bext.protocol.events import Headers

MAX_TAGS = 64
"""Tags kept per response; further ones are dropped."""

MAX_TAG_BYTES = 128
"""The longest tag kept, in bytes."""

EDGE_ONLY_FIELDS = frozenset({b"cache-tag", b"surrogate-key", b"surrogate-control"})
"""Response fields for bext alone, removed before the client sees the response."""


@dataclass(frozen=True, slots=True)
class ParsedTags:
    """The tags of a response and how many were dropped, and why."""

    tags: tuple[bytes, ...] = ()
    too_long: int = 0
    """Tags longer than the byte limit."""
    over_limit: int = 0
    """Distinct valid tags beyond the count limit."""
    invalid: int = 0
    """Tags with control characters, or with whitespace inside a ``Cache-Tag`` member."""

    @property
    def dropped(self) -> int:
        """All tags not kept."""
        return self.too_long + self.over_limit + self.invalid


def _valid(tag: bytes) -> bool:
    return all(0x21 <= b != 0x7F for b in tag)


def parse_tags(
    response_headers: Headers, *, max_tags: int = MAX_TAGS, max_tag_bytes: int = MAX_TAG_BYTES
) -> ParsedTags:
    """The tags of ``Cache-Tag`` (comma-separated) and ``Surrogate-Key`` (space-separated).

    Members are stripped of whitespace and empty ones ignored; repeated tags count once;
    ``Cache-Tag`` tags come first. At most ``max_tags`` tags of at most ``max_tag_bytes``
    bytes each are kept; :class:`ParsedTags` counts the rest. Never raises.
    """
    raw: list[bytes] = []
    for line in field_lines(response_headers, b"cache-tag"):
        raw.extend(member.strip(b" \t") for member in line.split(b","))
    for line in field_lines(response_headers, b"surrogate-key"):
        raw.extend(line.split())
    kept: dict[bytes, None] = {}
    too_long = over_limit = invalid = 0
    for tag in raw:
        if not tag or tag in kept:
            continue
        if not _valid(tag):
            invalid += 1
        elif len(tag) > max_tag_bytes:
            too_long += 1
        elif len(kept) >= max_tags:
            over_limit += 1
        else:
            kept[tag] = None
    return ParsedTags(tuple(kept), too_long, over_limit, invalid)


def strip_edge_fields(response_headers: Headers) -> Headers:
    """The response fields without :data:`EDGE_ONLY_FIELDS` (case-insensitive names)."""
    return [(n, v) for n, v in response_headers if n.lower() not in EDGE_ONLY_FIELDS]
