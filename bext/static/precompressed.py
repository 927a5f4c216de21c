"""Precompressed variants (``app.css.br``, ``app.css.gz``) and Accept-Encoding.

Build pipelines (``django-compressor``, WhiteNoise's ``compress_static``, bundler
plugins, ``brotli -k``) write maximum-quality compressed copies beside each file once,
so serving them costs nothing per request while on-the-fly compression could only
afford a fast, weaker level. A variant is served when the client accepts its coding.

Accept-Encoding is parsed per RFC 9110 section 12.5.3: q-values, ``q=0`` excludes a
coding, ``*`` covers codings not listed, ``x-gzip`` means ``gzip``. Among the acceptable
codings the highest q wins, and on a tie brotli beats gzip beats identity (brotli is
smaller, and identity is only preferred when the client says so). Identity is always the
last resort, even when the client "refuses" it: the RFC's alternative is a 406, which
helps nobody. Browsers send a handful of distinct header values, so the parsed
preference order is memoised per raw value (a small, bounded table).
"""

from __future__ import annotations

__all__ = ["IDENTITY", "VARIANTS", "preference"]

IDENTITY = "identity"

VARIANTS: tuple[tuple[str, str], ...] = (("br", ".br"), ("gzip", ".gz"))
"""(content-coding, file suffix), most preferred first."""

_RANK = {"br": 0, "gzip": 1, IDENTITY: 2}
_NONE: tuple[str, ...] = (IDENTITY,)
_MEMO: dict[bytes, tuple[str, ...]] = {}
_MEMO_LIMIT = 256
_UNLISTED_IDENTITY = 0.0001
"""Identity is acceptable when not listed (RFC 9110), but as the least wanted coding."""


def _qvalue(params: str) -> float | None:
    """The q parameter of one element (1 when absent), or None if it is malformed."""
    q = 1.0
    for param in params.split(";"):
        key, equals, value = param.partition("=")
        if key.strip().lower() != "q":
            continue
        value = value.strip()
        if not equals or not value or len(value) > 5:
            return None
        try:
            q = float(value)
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0 or not value[0].isdigit():
            return None
    return q


def _parse(value: bytes) -> tuple[str, ...]:
    listed: dict[str, float] = {}
    star: float | None = None
    for element in value.decode("latin-1").split(","):
        name, _, params = element.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = _qvalue(params)
        if q is None:
            continue
        if name == "x-gzip":
            name = "gzip"
        if name == "*":
            star = q
        elif name not in listed:
            listed[name] = q
    weights: dict[str, float] = {}
    for coding in ("br", "gzip"):
        q = listed.get(coding, star if star is not None else 0.0)
        if q > 0:
            weights[coding] = q
    if IDENTITY in listed:
        weights[IDENTITY] = listed[IDENTITY]
    elif star is not None:
        weights[IDENTITY] = star
    else:
        weights[IDENTITY] = _UNLISTED_IDENTITY
    order = sorted(
        (coding for coding, q in weights.items() if q > 0),
        key=lambda coding: (-weights[coding], _RANK[coding]),
    )
    if IDENTITY not in order:
        order.append(IDENTITY)
    return tuple(order)


def preference(value: bytes | None) -> tuple[str, ...]:
    """Acceptable codings among br, gzip and identity, best first; identity is last resort.

    No header at all means identity (RFC 9110 allows any coding then, but a client that
    says nothing is best served plain).
    """
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
