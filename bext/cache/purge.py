"""Purge requests: the body of ``POST /__bext/cache/invalidate`` and ``bext cache purge``.

The admin body is a JSON object with one or more of ``"tags"``, ``"urls"``,
``"prefixes"`` (non-empty lists of strings) or ``"all": true`` alone, and optionally
``"soft"`` (a bool: mark stale instead of removing). Anything else is refused with a
:class:`PurgeError` whose ``reason`` the endpoint returns in its 400 answer.

Limits: a body of at most 64 KiB, at most 1000 targets in total, tags of at most 128
bytes (UTF-8; longer tags are never stored, see :mod:`bext.cache.tags`), no whitespace or
control characters in any string, no duplicate keys in the object.

URLs and prefixes are absolute ``http``/``https`` URLs or paths starting with ``/``; both
are normalised by :func:`normalise_target` to ``(host or None, path-with-query)``: the
path as :func:`bext.routing.path.normalize_path` makes it (percent-decoded, dot segments
resolved, slashes merged, ``%2F`` kept as text) with ``%`` and ``?`` escaped again
(:func:`bext.cache.key.escape_path`), the query verbatim, the host lower-cased
without the scheme's default port. The cache key must use the same function so that a
purge finds what a request stored. ``None`` as host means "every host".

Everything is deduplicated in order; nothing here touches the store or the tag table.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from bext.cache.key import escape_path
from bext.routing.path import BadPath, absolute_form_host, normalize_path, split_target

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ITEMS",
    "MAX_TAG_BYTES",
    "PurgeError",
    "PurgeRequest",
    "Target",
    "normalise_target",
    "parse_body",
    "parse_shell",
]

MAX_BODY_BYTES = 64 * 1024
MAX_ITEMS = 1000
MAX_TAG_BYTES = 128
_MAX_STRING = 8192  # a URL or prefix longer than this is not a request-target bext serves

_LISTS = ("tags", "urls", "prefixes")
_FIELDS = frozenset({*_LISTS, "all", "soft"})
_DEFAULT_PORT = {"http": ":80", "https": ":443"}

_T = TypeVar("_T")

Target = tuple[str | None, str]
"""``(host or None, normalised path with query)``."""


class PurgeError(ValueError):
    """The purge request is invalid; ``reason`` says why (the 400 body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PurgeRequest:
    """What to invalidate. ``all`` excludes the three others; ``soft`` marks stale."""

    tags: tuple[bytes, ...] = ()
    urls: tuple[Target, ...] = ()
    prefixes: tuple[Target, ...] = ()
    all: bool = False
    soft: bool = False


def _fail(reason: str) -> NoReturn:
    raise PurgeError(reason)


def _show(text: str) -> str:
    """A short, printable rendering of user input for a reason string."""
    shown = ascii(text[:60])
    return shown + ("..." if len(text) > 60 else "")


def _check_text(kind: str, text: str) -> bytes:
    """``text`` as UTF-8 if it has no whitespace, control character or lone surrogate."""
    if not text:
        _fail(f"{kind}: empty string")
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs"):
            what = "whitespace" if ch.isspace() else "a control character"
            if unicodedata.category(ch) == "Cs":
                what = "a lone surrogate"
            _fail(f"{kind}: {_show(text)} contains {what}")
    return text.encode("utf-8")


def _tag(text: str) -> bytes:
    raw = _check_text("tags", text)
    if len(raw) > MAX_TAG_BYTES:
        _fail(f"tags: {_show(text)} is longer than {MAX_TAG_BYTES} bytes")
    return raw


def normalise_target(text: str, kind: str = "urls") -> Target:
    """``(host or None, path-with-query)`` for an http(s) URL or a path starting with ``/``.

    Raises :class:`PurgeError` (``kind`` names the field in the reason).
    """
    raw = _check_text(kind, text)
    if len(raw) > _MAX_STRING:
        _fail(f"{kind}: {_show(text)} is longer than {_MAX_STRING} bytes")
    if b"#" in raw:
        _fail(f"{kind}: {_show(text)} has a fragment")
    try:
        authority, origin = absolute_form_host(raw)
        if authority is None and raw[:1] != b"/":
            _fail(f"{kind}: {_show(text)} is neither a path starting with '/' nor an http(s) URL")
        path, query = split_target(origin)
        normalised = escape_path(normalize_path(path))
    except BadPath as exc:
        _fail(f"{kind}: {_show(text)}: {exc.reason}")
    if b"?" in origin:
        normalised += "?" + query.decode("utf-8")
    host = None
    if authority is not None:
        host = authority.lower()
        scheme = "https" if raw[:5].lower() == b"https" else "http"
        host = host.removesuffix(_DEFAULT_PORT[scheme])
        if host.endswith(":"):
            host = host[:-1]  # an empty port is the default port (RFC 3986 §3.2.3)
        name, colon, port = host.rpartition(":")
        if colon and not name.endswith(":") and "]" not in port and not port.isdigit():
            _fail(f"{kind}: {_show(text)} has an invalid port")
        if not host or host.startswith(":"):
            _fail(f"{kind}: {_show(text)} has no host")
    return host, normalised


def _dedup(items: Sequence[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _build(
    tags: Sequence[str], urls: Sequence[str], prefixes: Sequence[str], all: bool, soft: bool
) -> PurgeRequest:
    total = len(tags) + len(urls) + len(prefixes)
    if total > MAX_ITEMS:
        _fail(f"too many targets: {total} (at most {MAX_ITEMS} in one request)")
    if all and total:
        _fail("'all' cannot be combined with tags, urls or prefixes")
    if not all and not total:
        _fail("nothing to purge: give tags, urls, prefixes or all")
    return PurgeRequest(
        tags=_dedup([_tag(tag) for tag in tags]),
        urls=_dedup([normalise_target(url, "urls") for url in urls]),
        prefixes=_dedup([normalise_target(prefix, "prefixes") for prefix in prefixes]),
        all=all,
        soft=soft,
    )


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _fail(f"duplicate field {_show(key)}")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    _fail(f"invalid JSON: {name} is not allowed")


def _string_list(name: str, value: object) -> list[str]:
    if not isinstance(value, list):
        _fail(f"'{name}' must be a list of strings, not {_json_type(value)}")
    if not value:
        _fail(f"'{name}' must not be empty")
    if len(value) > MAX_ITEMS:
        _fail(f"too many targets: {len(value)} {name} (at most {MAX_ITEMS} in one request)")
    for item in value:
        if not isinstance(item, str):
            _fail(f"'{name}' must be a list of strings, found {_json_type(item)}")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def parse_body(body: bytes) -> PurgeRequest:
    """Parse and validate the JSON body of ``POST /__bext/cache/invalidate``.

    Raises :class:`PurgeError` with a reason, and nothing else, whatever the bytes.
    """
    if len(body) > MAX_BODY_BYTES:
        _fail(f"body too large: {len(body)} bytes (at most {MAX_BODY_BYTES})")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _fail("body is not valid UTF-8")
    if not text.strip():
        _fail("empty body: expected a JSON object")
    try:
        document = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_no_constant)
    except PurgeError:
        raise
    except RecursionError:
        _fail("invalid JSON: nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        _fail(f"invalid JSON: {exc}")
    if not isinstance(document, dict):
        _fail(f"body must be a JSON object, not {_json_type(document)}")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        names = ", ".join(_show(name) for name in unknown[:5])
        _fail(f"unknown field(s) {names}: allowed are tags, urls, prefixes, all, soft")
    lists = {name: _string_list(name, document[name]) for name in _LISTS if name in document}
    everything = document.get("all", False)
    if "all" in document and everything is not True:
        _fail("'all' must be true when given")
    soft = document.get("soft", False)
    if not isinstance(soft, bool):
        _fail(f"'soft' must be a boolean, not {_json_type(soft)}")
    return _build(
        lists.get("tags", []), lists.get("urls", []), lists.get("prefixes", []), everything, soft
    )


def parse_shell(
    tags: Sequence[str] | None = None,
    urls: Sequence[str] | None = None,
    prefixes: Sequence[str] | None = None,
    all: bool = False,
    soft: bool = False,
) -> PurgeRequest:
    """The same request from ``bext cache purge --tag T ... | --url U ... | --prefix P ...
    | --all [--soft]``: the lists argparse makes with ``action="append"`` (``None`` when the
    option is absent). Raises :class:`PurgeError`.
    """
    return _build(list(tags or ()), list(urls or ()), list(prefixes or ()), all, soft)
