"""Cache keys: what a request is stored under, and what a purge target covers.

The primary key (RFC 9111 §4) is ``path?query NUL host NUL scheme``:

* the path as routing sees it (:func:`bext.routing.path.normalize_path`: percent-decoded,
  dot segments resolved, slashes merged) with ``%`` and ``?`` escaped again
  (:func:`escape_path`), so that a path holding a decoded ``%3F`` can never read as a
  path and a query; then the query byte for byte, the ``?`` kept only when the target had
  one. Exactly what :func:`bext.cache.purge.normalise_target` makes of a purge URL, so a
  purge finds what a request stored;
* the host lower-cased without the scheme's default port (the ``Host`` field, or the
  authority of an absolute-form target);
* the scheme last, so that one URL purge (a key prefix ``path?query NUL host NUL``) takes
  both the ``http`` and the ``https`` entry.

The path comes first so that purging a URL or a path prefix on every host is one ordered
range of the store's index. NUL cannot occur in a path or query bext accepts, so the
fields never run into each other.
"""

from __future__ import annotations

from bext.http.message import Request

_DEFAULT_PORT = {"http": ":80", "https": ":443"}
SEPARATOR = b"\x00"
_QUESTION_MARK = ord("?")


def escape_path(path: str) -> str:
    """A decoded path with ``%`` and ``?`` percent-encoded again: ``/a%3Fb`` (decoded
    ``/a?b``) and ``/a?b`` (path ``/a``, query ``b``) must not share a key, or one URL's
    response would be served for the other."""
    if "%" in path:
        path = path.replace("%", "%25")
    if "?" in path:
        path = path.replace("?", "%3F")
    return path


def host_key(host: str | None, scheme: str) -> bytes:
    """The host as keys hold it: lower-case, no default port, no empty port."""
    if not host:
        return b""
    host = host.lower().removesuffix(_DEFAULT_PORT.get(scheme, "")).removesuffix(":")
    return host.encode("utf-8", "surrogateescape")


def request_key(request: Request) -> bytes:
    """The primary cache key of a routed request (its path and query already split)."""
    return primary_key(request.path, request.target, request.query, request.host, request.scheme)


def primary_key(path: str, target: bytes, query: bytes, host: str | None, scheme: str) -> bytes:
    """The primary key of a request to ``target`` (normalised ``path``, raw ``query``)."""
    key = escape_path(path).encode("utf-8", "surrogateescape")
    if _QUESTION_MARK in target:  # a byte value: see bext.routing.path
        key += b"?" + query
    return SEPARATOR.join((key, host_key(host, scheme), scheme.encode("ascii")))


def url_prefix(host: str | None, path_and_query: str) -> bytes:
    """The key prefix of every entry of one URL: all schemes, and all hosts when ``host``
    is None."""
    prefix = path_and_query.encode("utf-8", "surrogateescape") + SEPARATOR
    if host is None:
        return prefix
    return prefix + host_key(host, "") + SEPARATOR


def key_host(key: bytes) -> bytes:
    """The host field of a primary key (for purges by path prefix on one host)."""
    parts = key.split(SEPARATOR)
    return parts[-2] if len(parts) >= 3 else b""
