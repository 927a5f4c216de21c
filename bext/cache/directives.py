"""Cache directives: ``Cache-Control`` (RFC 9111 §5.2), ``Pragma`` (§5.4) and
``Surrogate-Control`` (the Edge Architecture convention for edge-only lifetimes).

Parsing is tolerant: directive names are case-insensitive, whitespace around members and
``=`` is ignored, arguments may be tokens or quoted-strings (§5.2: recipients accept both),
and malformed bytes never raise. Repeated directives keep the most restrictive value
(§4.2.1), and a delta-seconds argument that is not a non-negative integer is handled as §1.2.2
and §4.2.1 advise: an invalid ``max-age`` or ``s-maxage`` makes the response stale (0); other
invalid arguments are ignored. Values above 2**31 are capped at 2**31 (§1.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bext.cache._fields import field_lines, has_field, split_list, unquote
from bext.protocol.events import Headers

DELTA_MAX = 2**31
"""The largest delta-seconds a cache must handle; larger values are capped to it (§1.2.2)."""


def parse_delta_seconds(value: bytes | None) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2), capped at :data:`DELTA_MAX`; ``None`` if invalid."""
    if value is None:
        return None
    value = unquote(value.strip(b" \t")).strip(b" \t")
    if not value or not value.isdigit():
        return None
    if len(value) > 10:
        return DELTA_MAX
    return min(int(value), DELTA_MAX)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The directives of one message's ``Cache-Control`` (RFC 9111 §5.2.1 and §5.2.2).

    Request-only and response-only directives share the class; the ones that do not apply to
    the message's direction are simply absent. ``max_stale`` without an argument is
    :data:`DELTA_MAX` (any staleness). Qualified ``no-cache`` / ``private`` (§5.2.2.4,
    §5.2.2.7) set the flag and list their field names.
    """

    max_age: int | None = None
    s_maxage: int | None = None
    max_stale: int | None = None
    min_fresh: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    no_cache: bool = False
    no_cache_fields: tuple[bytes, ...] = ()
    no_store: bool = False
    no_transform: bool = False
    only_if_cached: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    public: bool = False
    private: bool = False
    private_fields: tuple[bytes, ...] = ()
    immutable: bool = False


def _min(current: int | None, new: int) -> int:
    return new if current is None else min(current, new)


def _field_names(argument: bytes | None) -> tuple[bytes, ...]:
    if argument is None:
        return ()
    return tuple(name.lower() for name in split_list(unquote(argument)))


def parse_directives(values: list[bytes]) -> CacheControl:
    """Parse ``Cache-Control`` field line values (RFC 9111 §5.2) into :class:`CacheControl`.

    Never raises. Duplicates keep the most restrictive value: the smallest ``max-age``,
    ``s-maxage``, ``max-stale``, ``stale-while-revalidate`` and ``stale-if-error``, the
    largest ``min-fresh``; an unqualified ``no-cache`` or ``private`` wins over a qualified one.
    """
    fields: dict[str, bool] = {}
    max_age: int | None = None
    s_maxage: int | None = None
    max_stale: int | None = None
    min_fresh: int | None = None
    swr: int | None = None
    sie: int | None = None
    no_cache_fields: list[bytes] = []
    no_cache_unqualified = False
    private_fields: list[bytes] = []
    private_unqualified = False
    flags = {
        "no-store": "no_store",
        "no-transform": "no_transform",
        "only-if-cached": "only_if_cached",
        "must-revalidate": "must_revalidate",
        "proxy-revalidate": "proxy_revalidate",
        "must-understand": "must_understand",
        "public": "public",
        "immutable": "immutable",
    }
    for line in values:
        for member in split_list(line):
            name_raw, eq, arg_raw = member.partition(b"=")
            name = name_raw.strip(b" \t").lower().decode("latin-1")
            argument = arg_raw.strip(b" \t") if eq else None
            delta = parse_delta_seconds(argument)
            if name in flags:
                fields[flags[name]] = True
            elif name in ("max-age", "s-maxage"):
                # §4.2.1: invalid freshness information is treated as stale.
                value = 0 if delta is None else delta
                if name == "max-age":
                    max_age = _min(max_age, value)
                else:
                    s_maxage = _min(s_maxage, value)
            elif name == "max-stale":
                if argument is None:
                    max_stale = _min(max_stale, DELTA_MAX)
                elif delta is not None:
                    max_stale = _min(max_stale, delta)
            elif name == "min-fresh":
                if delta is not None:
                    min_fresh = delta if min_fresh is None else max(min_fresh, delta)
            elif name == "stale-while-revalidate":
                if delta is not None:
                    swr = _min(swr, delta)
            elif name == "stale-if-error":
                if delta is not None:
                    sie = _min(sie, delta)
            elif name == "no-cache":
                names = _field_names(argument)
                if names:
                    no_cache_fields.extend(names)
                else:
                    no_cache_unqualified = True
            elif name == "private":
                names = _field_names(argument)
                if names:
                    private_fields.extend(names)
                else:
                    private_unqualified = True
    return CacheControl(
        max_age=max_age,
        s_maxage=s_maxage,
        max_stale=max_stale,
        min_fresh=min_fresh,
        stale_while_revalidate=swr,
        stale_if_error=sie,
        no_cache=no_cache_unqualified or bool(no_cache_fields),
        no_cache_fields=() if no_cache_unqualified else tuple(dict.fromkeys(no_cache_fields)),
        no_store=bool(fields.get("no_store")),
        no_transform=bool(fields.get("no_transform")),
        only_if_cached=bool(fields.get("only_if_cached")),
        must_revalidate=bool(fields.get("must_revalidate")),
        proxy_revalidate=bool(fields.get("proxy_revalidate")),
        must_understand=bool(fields.get("must_understand")),
        public=bool(fields.get("public")),
        private=private_unqualified or bool(private_fields),
        private_fields=() if private_unqualified else tuple(dict.fromkeys(private_fields)),
        immutable=bool(fields.get("immutable")),
    )


def response_cache_control(headers: Headers) -> CacheControl:
    """The response directives of ``headers`` (RFC 9111 §5.2.2)."""
    return parse_directives(field_lines(headers, b"cache-control"))


def request_cache_control(headers: Headers) -> CacheControl:
    """The request directives of ``headers`` (RFC 9111 §5.2.1), with ``Pragma`` folded in.

    ``Pragma: no-cache`` counts as ``Cache-Control: no-cache`` only when the request has no
    ``Cache-Control`` field (RFC 9111 §5.4, as RFC 7234 §5.4 specified it).
    """
    directives = parse_directives(field_lines(headers, b"cache-control"))
    if not has_field(headers, b"cache-control") and pragma_no_cache(headers):
        return replace(directives, no_cache=True)
    return directives


def pragma_no_cache(headers: Headers) -> bool:
    """Whether ``Pragma`` carries ``no-cache`` (RFC 9111 §5.4), case-insensitively."""
    return any(
        member.partition(b"=")[0].strip().lower() == b"no-cache"
        for line in field_lines(headers, b"pragma")
        for member in split_list(line)
    )


@dataclass(frozen=True, slots=True)
class SurrogateControl:
    """The edge-only directives of ``Surrogate-Control`` (W3C Edge Architecture 1.0).

    For a shared edge cache they win over ``Cache-Control``: ``max_age`` is the lifetime
    before any ``s-maxage``/``max-age``/``Expires``, and ``no_store`` forbids storing even if
    ``Cache-Control`` allows it. The field is stripped before the client sees the response.
    """

    max_age: int | None = None
    no_store: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None


def surrogate_control(headers: Headers) -> SurrogateControl:
    """Parse ``Surrogate-Control`` with the Cache-Control grammar (RFC 9111 §5.2 rules).

    Targeted directives (``max-age=60;edge``) apply to every surrogate: the target is ignored.
    """
    lines = [
        b",".join(member.partition(b";")[0] for member in split_list(line))
        for line in field_lines(headers, b"surrogate-control")
    ]
    directives = parse_directives(lines)
    return SurrogateControl(
        max_age=directives.max_age,
        no_store=directives.no_store,
        stale_while_revalidate=directives.stale_while_revalidate,
        stale_if_error=directives.stale_if_error,
    )
