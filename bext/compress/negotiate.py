"""Content-coding negotiation from ``Accept-Encoding`` (RFC 9110 §12.5.3).

Only two codings are ever produced, so the answer is one of ``"br"``, ``"gzip"`` or None
(send the response as it is). The rules, in the order they matter:

* No ``Accept-Encoding`` at all: None. RFC 9110 would allow any coding, but clients that
  send nothing are scripts and old tools that may not decode it (nginx does the same).
* A coding's weight is its own ``;q=``, else that of ``*``, else 0 (not acceptable);
  ``x-gzip`` counts as ``gzip``. ``q=0`` excludes, also when ``*`` would have allowed it.
* The highest weight wins; on a tie brotli beats gzip (smaller at the same CPU cost).
* ``identity`` listed explicitly with a weight above the best coding wins too: the client
  said it would rather have the bytes as they are. Identity that is merely implicit (not
  listed) never outranks a coding, or every coding would tie with it.
* Malformed members (a bad ``q``, an empty name) are ignored one by one; the rest of the
  header still counts, as a lenient reading costs nothing here: whatever is chosen was
  named acceptable by the client.

Browsers send a handful of distinct values, so answers are memoised per header value.
"""

from __future__ import annotations

import re
from functools import lru_cache

BROTLI = "br"
GZIP = "gzip"

_QVALUE = re.compile(rb"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


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


def choose_encoding(accept_encoding: bytes) -> str | None:
    """The coding to use for a request whose ``Accept-Encoding`` value is given.

    Several ``Accept-Encoding`` fields are passed joined with commas, as RFC 9110 §5.3
    makes them equivalent to one list.
    """
    weights: dict[bytes, float] = {}
    for member in accept_encoding.split(b","):
        name, *params = member.split(b";")
        name = name.strip().lower()
        if not name:
            continue
        weight = _weight(params)
        if weight is None:
            continue
        if name == b"x-gzip":
            name = b"gzip"
        # A client contradicting itself ("gzip, gzip;q=0") gets the cautious reading.
        weights[name] = min(weight, weights.get(name, weight))
    star = weights.get(b"*", 0.0)
    best: str | None = None
    best_weight = 0.0
    for coding, token in ((BROTLI, b"br"), (GZIP, b"gzip")):
        weight = weights.get(token, star)
        if weight > best_weight:
            best, best_weight = coding, weight
    if best is not None and weights.get(b"identity", 0.0) > best_weight:
        return None
    return best


_choose_memo = lru_cache(maxsize=512)(choose_encoding)


def negotiate(header_values: list[bytes]) -> str | None:
    """The coding for a request carrying these ``Accept-Encoding`` values (maybe none)."""
    if not header_values:
        return None
    joined = header_values[0] if len(header_values) == 1 else b",".join(header_values)
    if len(joined) > 1024:
        # Real browsers send ~30 bytes; do not let odd clients fill the memo with junk.
        return choose_encoding(joined)
    return _choose_memo(joined)
