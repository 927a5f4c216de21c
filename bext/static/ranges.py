"""The Range header (RFC 9110 section 14): which bytes of a representation to send.

The outcome of :func:`parse_range` is one of three things, and the distinction matters:

* ``None``: ignore the header and send the whole representation with 200. That is what
  the RFC allows for a header that does not parse, a unit other than ``bytes``, or
  (section 14.2, "a server MAY ignore ... a Range header with more than two overlapping
  ranges, or a set of many small ranges") more than :data:`MAX_RANGES` ranges. A client
  asking for ranges only wanted fewer bytes, so the full body is always a correct answer.
* ``[]``: the header parses but no range overlaps the representation: 416 with
  ``Content-Range: bytes */SIZE``.
* a list of ``(first, last)`` byte positions (inclusive), clamped to the representation.
  Overlapping ranges are sorted and merged, which the RFC permits, so that
  ``bytes=0-,0-,0-...`` cannot make bext send the file many times over in one response;
  ranges that do not overlap keep the order the client asked for.

Numbers longer than 18 digits are treated as "larger than any file" instead of being
converted, so a hostile header costs no big-integer work.
"""

from __future__ import annotations

__all__ = ["MAX_RANGES", "parse_range"]

MAX_RANGES = 16
"""More ranges than this and the header is ignored (200 with the whole body)."""

_HUGE = 10**18


def _number(digits: bytes) -> int | None:
    if not digits.isdigit():  # ASCII digits only, for bytes
        return None
    if len(digits) > 18:
        return _HUGE
    return int(digits)


def parse_range(value: bytes, size: int) -> list[tuple[int, int]] | None:
    """The satisfiable byte ranges of a ``Range`` header for a ``size``-byte body."""
    unit, equals, spec = value.partition(b"=")
    if not equals or unit.strip(b" \t").lower() != b"bytes" or size <= 0:
        # An empty representation has no byte to address: send it whole (200).
        return None
    ranges: list[tuple[int, int]] = []
    count = 0
    for raw in spec.split(b","):
        item = raw.strip(b" \t")
        if not item:
            continue  # empty list elements are allowed (RFC 9110 section 5.6.1)
        count += 1
        if count > MAX_RANGES:
            return None
        first_text, dash, last_text = item.partition(b"-")
        if not dash:
            return None
        if first_text:
            first = _number(first_text)
            if first is None:
                return None
            if last_text:
                last = _number(last_text)
                if last is None or last < first:
                    return None
            else:
                last = size - 1
            if first >= size:
                continue  # unsatisfiable on its own; others may still be fine
            ranges.append((first, min(last, size - 1)))
        else:
            suffix = _number(last_text) if last_text else None
            if suffix is None:
                return None
            if suffix == 0:
                continue
            ranges.append((max(0, size - suffix), size - 1))
    if count == 0:
        return None
    if len(ranges) > 1:
        ranges = _coalesce(ranges)
    return ranges


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping ranges (sorted); leave a non-overlapping set as it was asked."""
    ordered = sorted(ranges)
    if all(ordered[i][1] < ordered[i + 1][0] for i in range(len(ordered) - 1)):
        return ranges
    merged = [ordered[0]]
    for first, last in ordered[1:]:
        prev_first, prev_last = merged[-1]
        if first <= prev_last + 1:
            merged[-1] = (prev_first, max(prev_last, last))
        else:
            merged.append((first, last))
    return merged
