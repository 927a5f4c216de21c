"""Path globs for routing rules, compiled once into the cheapest possible test.

Routing runs on every request, so each pattern is classified at config load
time and only patterns that genuinely need it pay for a regular expression:

* ``/robots.txt``     -> EXACT: a string compare (the router turns these into
  a single dict lookup for the whole table);
* ``/static/**``      -> PREFIX: ``path == "/static" or path.startswith("/static/")``;
* ``/**``             -> ANY: matches everything, no test at all;
* ``/files/*.css``, ``/a/**/b`` -> REGEX: one compiled ``fullmatch``;
* several ``**``, or several ``*`` in one segment -> SEGMENTS: a small
  backtracking-free matcher. Python's ``re`` backtracks, and a regex with k
  unbounded groups costs O(n^k) on a hostile path (``/**/a/**/b/**/c``
  against 8 KB of ``/a/a/...`` took over a minute), so those patterns are
  matched greedily instead, which is O(segments x pattern) with C-level
  ``str.find``/``startswith`` doing the per-segment work.

Glob syntax: ``*`` matches zero or more characters inside one path segment
(never ``/``) and may sit anywhere in a segment (``/files/*.css``); ``**``
must be a whole segment and matches zero or more segments, so ``/static/**``
matches ``/static``, ``/static/`` and ``/static/a/b.css`` but not
``/staticfoo``. Every other character is literal.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

__all__ = ["GlobKind", "GlobMatcher", "compile_glob", "validate_glob"]


class GlobKind(enum.Enum):
    """How a compiled glob tests a path; the router uses it to pick a strategy."""

    EXACT = "exact"
    PREFIX = "prefix"
    ANY = "any"
    REGEX = "regex"
    SEGMENTS = "segments"


def validate_glob(pattern: str) -> str | None:
    """Return a human-readable error for an invalid pattern, or None if it is valid.

    Kept separate from compilation so the config loader can report every bad
    rule with its location instead of failing on the first exception.
    """
    if not pattern.startswith("/"):
        return f'must start with "/", got "{pattern}"'
    if "***" in pattern:
        return f'"***" in "{pattern}": use "**" for any number of segments'
    for segment in pattern.split("/"):
        if "**" in segment and segment != "**":
            # "/a**" has no single obvious meaning (prefix "/a"? segment "a..."?) and
            # guessing wrong would expose or hide files.
            return (
                f'"**" must be a whole path segment, as in "/static/**", '
                f'got "{segment}" in "{pattern}"'
            )
    return None


def _always(_path: str) -> bool:
    """Test used for catch-all patterns."""
    return True


class GlobMatcher:
    """A compiled glob.

    ``test`` is the fastest callable available for the pattern's kind (a C-level
    bound method wherever possible) and returns a truthy value on a match; the
    router calls it directly. Calling the matcher itself returns a real bool.
    ``literal`` is the exact path for EXACT, or the base path (``/static`` for
    ``/static/**``) for PREFIX, so the router can put it into a dict.
    """

    __slots__ = ("kind", "literal", "pattern", "test")

    def __init__(
        self, pattern: str, kind: GlobKind, literal: str, test: Callable[[str], object]
    ) -> None:
        self.pattern = pattern
        self.kind = kind
        self.literal = literal
        self.test = test

    def __call__(self, path: str) -> bool:
        return bool(self.test(path))

    def __repr__(self) -> str:
        return f"GlobMatcher({self.pattern!r}, {self.kind.name})"


def _segments(pattern: str) -> list[str]:
    """Split a validated pattern into segments, collapsing runs of ``**``.

    ``**/**`` means exactly what ``**`` means; collapsing keeps the regex free
    of adjacent unbounded groups that would only add backtracking.
    """
    out: list[str] = []
    for segment in pattern[1:].split("/"):
        if segment == "**" and out and out[-1] == "**":
            continue
        out.append(segment)
    return out


def _to_regex(segments: list[str]) -> str:
    """Translate segments into a regex meant for ``fullmatch``.

    Each segment is preceded by its ``/``; a ``**`` segment together with its
    leading slash becomes ``(?:/.*)?`` -- "nothing, or a slash followed by any
    number of whole segments" -- which is what makes ``/a/**/b`` match ``/a/b``.
    """
    parts: list[str] = []
    for segment in segments:
        if segment == "**":
            parts.append("(?:/.*)?")
        else:
            parts.append("/" + "[^/]*".join(re.escape(piece) for piece in segment.split("*")))
    return "".join(parts)


def compile_glob(pattern: str) -> GlobMatcher:
    """Compile a glob pattern into a :class:`GlobMatcher`; raises ValueError if invalid."""
    error = validate_glob(pattern)
    if error is not None:
        raise ValueError(error)
    segments = _segments(pattern)
    canonical = "/" + "/".join(segments)
    if "*" not in canonical:
        return GlobMatcher(pattern, GlobKind.EXACT, canonical, canonical.__eq__)
    if segments == ["**"]:
        return GlobMatcher(pattern, GlobKind.ANY, "", _always)
    if segments[-1] == "**" and "*" not in canonical[:-3]:
        base = canonical[:-3]
        prefix = base + "/"

        def test(path: str) -> bool:
            return path.startswith(prefix) or path == base

        return GlobMatcher(pattern, GlobKind.PREFIX, base, test)
    if segments.count("**") > 1 or any(
        segment != "**" and segment.count("*") > 1 for segment in segments
    ):
        return GlobMatcher(pattern, GlobKind.SEGMENTS, "", _SegmentGlob(segments).test)
    # With at most one "**" and one "*" per segment the regex backtracks at
    # most linearly: "[^/]*" cannot leave its segment and "(?:/.*)?" is the
    # only group that can move across the path.
    regex = re.compile(_to_regex(segments), re.DOTALL)
    return GlobMatcher(pattern, GlobKind.REGEX, "", regex.fullmatch)


# A compiled single segment: a literal, or the pieces between its "*"s.
_Segment = str | tuple[str, ...]


def _segment_matches(glob: _Segment, segment: str) -> bool:
    """Match one path segment; for ``a*b*c`` the greedy leftmost search is exact."""
    if isinstance(glob, str):
        return segment == glob
    first = glob[0]
    last = glob[-1]
    end = len(segment) - len(last)
    if end < len(first) or not segment.startswith(first) or not segment.endswith(last):
        return False
    pos = len(first)
    for piece in glob[1:-1]:
        found = segment.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def _block_matches(block: tuple[_Segment, ...], segments: list[str], start: int) -> bool:
    """Match consecutive pattern segments against path segments from ``start``."""
    return all(
        _segment_matches(glob, segments[start + offset]) for offset, glob in enumerate(block)
    )


class _SegmentGlob:
    """Backtracking-free matcher for globs with several ``**`` or starred segments.

    The pattern is cut at its ``**`` segments into blocks of fixed length. The
    first block must match at the start, the last one at the end, and each
    middle block at its leftmost position after the previous one -- taking the
    leftmost occurrence never loses a match, so no backtracking is needed.
    """

    __slots__ = ("head", "middle", "minimum", "tail")

    def __init__(self, segments: list[str]) -> None:
        blocks: list[list[_Segment]] = [[]]
        for segment in segments:
            if segment == "**":
                blocks.append([])
            else:
                blocks[-1].append(tuple(segment.split("*")) if "*" in segment else segment)
        self.head = tuple(blocks[0])
        self.tail: tuple[_Segment, ...] | None = tuple(blocks[-1]) if len(blocks) > 1 else None
        self.middle = tuple(tuple(block) for block in blocks[1:-1])
        self.minimum = sum(len(block) for block in blocks)

    def test(self, path: str) -> bool:
        segments = path[1:].split("/")
        count = len(segments)
        head = self.head
        if self.tail is None:
            return count == len(head) and _block_matches(head, segments, 0)
        if count < self.minimum or not _block_matches(head, segments, 0):
            return False
        tail_start = count - len(self.tail)
        if not _block_matches(self.tail, segments, tail_start):
            return False
        pos = len(head)
        for block in self.middle:
            last_start = tail_start - len(block)
            while pos <= last_start and not _block_matches(block, segments, pos):
                pos += 1
            if pos > last_start:
                return False
            pos += len(block)
        return True
