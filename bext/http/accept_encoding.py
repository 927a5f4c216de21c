"""``Accept-Encoding`` (RFC 9110 §12.5.3), parsed once for every user of it.

Static files pick a precompressed variant with it and the compression phase picks a
coding; both ask :func:`preference` for the acceptable codings among the ones bext can
produce, best first:

* a coding's weight is its own ``;q=``, else that of ``*``, else 0 (not acceptable);
  ``x-gzip`` means ``gzip``; ``q=0`` excludes, also when ``*`` would allow it; a client
  contradicting itself (``gzip, gzip;q=0``) gets the cautious reading;
* the highest weight wins; on a tie brotli beats gzip beats identity (brotli is smaller,
  and identity wins only when the client prefers it outright);
* identity is always the last resort, even when "refused": the RFC's alternative is a
  406, which helps nobody;
* no header at all means identity: clients that send nothing are scripts and old tools;
* malformed members (a bad ``q``, an empty name) are skipped one by one.

Browsers send a handful of distinct values, so answers are memoised per value (bounded).
"""

from __future__ import annotations

import re

__all__ = ["BROTLI", "GZIP", "IDENTITY", "preference"]

BROTLI = "br"
GZIP = "gzip"
IDENTITY = "identity"

_RANK = {BROTLI: 0, GZIP: 1, IDENTITY: 2}
_NONE: tuple[str, ...] = (IDENTITY,)
_QVALUE = re.compile(rb"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_UNLISTED_IDENTITY = 0.0001
"""Identity is acceptable when not listed (RFC 9110), but as the least wanted coding."""
_MEMO: dict[bytes, tuple[str, ...]] = {}
_MEMO_LIMIT = 256


def _weight(params: list[bytes]) -> float | None:
    """The member's ``q`` (1 when absent), or None when a ``q`` parameter is malformed."""
    weight = 1.0
    for param in params:
        name, eq, value = param.partition(b"=")
        if name.strip().lower() != b"q":
            continue  # codings take no other parameters; ignore rather than reject
        value = value.strip()
        if not eq or not _QVALUE.fullmatch(value):
            return None
        weight = float(value)
    return weight


def _parse(value: bytes) -> tuple[str, ...]:
    listed: dict[bytes, float] = {}
    for member in value.split(b","):
        name, *params = member.split(b";")
        name = name.strip().lower()
        if not name:
            continue
        weight = _weight(params)
        if weight is None:
            continue
        if name == b"x-gzip":
            name = b"gzip"
        listed[name] = min(weight, listed.get(name, weight))
    star = listed.get(b"*")
    weights: dict[str, float] = {}
    for coding in (BROTLI, GZIP):
        weight = listed.get(coding.encode(), star if star is not None else 0.0)
        if weight > 0:
            weights[coding] = weight
    identity = listed.get(b"identity", star if star is not None else _UNLISTED_IDENTITY)
    if identity > 0:
        weights[IDENTITY] = identity
    order = sorted(weights, key=lambda coding: (-weights[coding], _RANK[coding]))
    if IDENTITY not in order:
        order.append(IDENTITY)
    return tuple(order)


def preference(value: bytes | None) -> tuple[str, ...]:
    """Acceptable codings among br, gzip and identity, best first; identity always last
    resort. Several ``Accept-Encoding`` fields are passed joined with commas."""
    if value is None:
        return _NONE
    order = _MEMO.get(value)
    if order is None:
        order = _parse(value)
        if len(value) > 256:
            return order  # hostile or unusual: not worth remembering
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[value] = order
    return order
