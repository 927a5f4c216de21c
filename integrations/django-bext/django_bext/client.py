"""Clients for bext's cache invalidation endpoint.

``invalidate`` uses :mod:`http.client`; ``ainvalidate`` speaks HTTP/1.1 over
:func:`asyncio.open_connection` (no thread pool).  Both validate their
arguments eagerly (``ValueError``) and never raise for network or server
failures: those are logged on the ``django_bext`` logger and reported in the
returned :class:`InvalidationResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import conf

logger = logging.getLogger("django_bext")

MAX_TAG_LENGTH = 128
"""The longest tag bext keeps (``bext.cache.tags.MAX_TAG_BYTES``); tags are ASCII."""
MAX_ITEMS = 1000
"""Tags, URLs and prefixes one request may carry (bext refuses more with 400)."""
_MAX_RESPONSE = 1 << 20  # bytes of response body we are willing to read


@dataclass(frozen=True)
class InvalidationResult:
    """Outcome of one invalidation request.

    ``ok`` is True for a 2xx answer (or when ``BEXT_ENABLED`` is False);
    ``status`` is the HTTP status, or None when bext was not reached;
    ``detail`` is the response body or the error text; ``data`` the decoded
    JSON body when there was one.
    """

    ok: bool
    status: int | None
    detail: str
    data: Any = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return self.ok


# --- validation -----------------------------------------------------------


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid cache tag, else raise ``ValueError``.

    A tag is a non-empty ``str`` of at most 128 visible ASCII characters
    (0x21-0x7E) other than the comma: no whitespace, no control characters,
    no commas (the ``Cache-Tag`` header is comma-separated).
    """
    if not isinstance(tag, str):
        raise ValueError(f"cache tag must be a str, not {type(tag).__name__}: {tag!r}")
    if not tag:
        raise ValueError("cache tag must not be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"cache tag longer than {MAX_TAG_LENGTH} characters: {tag[:40]!r}...")
    for ch in tag:
        if ch == "," or not ("\x21" <= ch <= "\x7e"):
            raise ValueError(
                f"invalid character {ch!r} in cache tag {tag!r} "
                "(visible ASCII only, no commas or whitespace)"
            )
    return tag


def _validate_target(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{kind} entries must be str, not {type(value).__name__}: {value!r}")
    if not value:
        raise ValueError(f"{kind} entries must not be empty")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{kind} entry contains whitespace or control characters: {value!r}")
    if value.startswith("/"):
        return value
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        return value
    raise ValueError(
        f"{kind} entries must be a path starting with '/' or an http(s) URL: {value!r}"
    )


def _as_list(kind: str, values: Iterable[str] | str | None, check: Any) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    elif isinstance(values, bytes | bytearray) or not isinstance(values, Iterable):
        raise ValueError(f"{kind} must be a str or an iterable of str, not {type(values).__name__}")
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        checked = check(value)
        if checked not in seen:
            seen.add(checked)
            out.append(checked)
    return out


def build_payload(
    tags: Iterable[str] | str | None = None,
    urls: Iterable[str] | str | None = None,
    prefixes: Iterable[str] | str | None = None,
    all: bool = False,
    soft: bool = False,
) -> dict[str, Any]:
    """Validate the arguments of :func:`invalidate` and return the JSON body."""
    tag_list = _as_list("tags", tags, validate_tag)
    url_list = _as_list("urls", urls, lambda v: _validate_target("urls", v))
    prefix_list = _as_list("prefixes", prefixes, lambda v: _validate_target("prefixes", v))
    if len(tag_list) + len(url_list) + len(prefix_list) > MAX_ITEMS:
        raise ValueError(f"more than {MAX_ITEMS} tags, urls and prefixes in one invalidation")
    if not isinstance(all, bool):
        raise ValueError("all must be a bool")
    if not isinstance(soft, bool):
        raise ValueError("soft must be a bool")
    payload: dict[str, Any] = {}
    if all:
        if tag_list or url_list or prefix_list:
            raise ValueError("all=True cannot be combined with tags, urls or prefixes")
        payload["all"] = True
    else:
        if tag_list:
            payload["tags"] = tag_list
        if url_list:
            payload["urls"] = url_list
        if prefix_list:
            payload["prefixes"] = prefix_list
        if not payload:
            raise ValueError("nothing to invalidate: give tags, urls, prefixes or all=True")
    if soft:
        payload["soft"] = True
    return payload


# --- transport ------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str


def _target() -> _Target:
    raw = conf.admin_url()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"BEXT_ADMIN_URL is not an http(s) URL: {raw!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)  # may raise ValueError
    path = parts.path.rstrip("/") + conf.INVALIDATE_PATH
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if parts.port:
        host_header += f":{parts.port}"
    return _Target(parts.scheme, host, port, path, host_header)


def _headers(body: bytes, target: _Target) -> dict[str, str]:
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Accept": "application/json",
        "Connection": "close",
        "User-Agent": "django-bext",
    }
    token = conf.admin_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _result(status: int, raw: bytes, payload: dict[str, Any]) -> InvalidationResult:
    detail = raw.decode("utf-8", "replace")
    try:
        data = json.loads(detail) if detail else None
    except ValueError:
        data = None
    ok = 200 <= status < 300
    if ok:
        logger.debug("bext invalidation %s -> %s", payload, status)
    else:
        logger.warning("bext refused invalidation %s: HTTP %s %s", payload, status, detail[:500])
    return InvalidationResult(ok=ok, status=status, detail=detail, data=data)


def _failure(payload: dict[str, Any], exc: BaseException) -> InvalidationResult:
    text = str(exc) or type(exc).__name__
    logger.warning(
        "could not reach bext at %s to invalidate %s: %s", conf.admin_url(), payload, text
    )
    return InvalidationResult(ok=False, status=None, detail=text)


_DISABLED = InvalidationResult(ok=True, status=None, detail="disabled (BEXT_ENABLED = False)")


def invalidate(
    tags: Iterable[str] | str | None = None,
    urls: Iterable[str] | str | None = None,
    prefixes: Iterable[str] | str | None = None,
    all: bool = False,
    soft: bool = False,
) -> InvalidationResult:
    """Ask bext to invalidate cached responses (blocking, at most ~BEXT_TIMEOUT).

    Raises ``ValueError`` for invalid arguments; never raises for failures to
    reach bext (they are logged and returned as ``ok=False``).
    """
    payload = build_payload(tags, urls, prefixes, all, soft)
    if not conf.enabled():
        return _DISABLED
    try:
        target = _target()
        body = json.dumps(payload).encode()
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            conn = http.client.HTTPSConnection(
                target.host,
                target.port,
                timeout=conf.timeout(),
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=conf.timeout())
        try:
            conn.request("POST", target.path, body=body, headers=_headers(body, target))
            response = conn.getresponse()
            raw = response.read(_MAX_RESPONSE)
            status = response.status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _failure(payload, exc)
    return _result(status, raw, payload)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    parts = status_line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise http.client.BadStatusLine(status_line.decode("latin-1", "replace").strip())
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise http.client.IncompleteRead(b"")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if status in (204, 304) or 100 <= status < 200:
        return status, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        size_total = 0
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            chunk = await reader.readexactly(size + 2)
            chunks.append(chunk[:-2])
            size_total += size
            if size_total > _MAX_RESPONSE:
                break
        return status, b"".join(chunks)[:_MAX_RESPONSE]
    if "content-length" in headers:
        length = min(int(headers["content-length"]), _MAX_RESPONSE)
        return status, await reader.readexactly(length)
    return status, await reader.read(_MAX_RESPONSE)


async def _async_post(target: _Target, body: bytes) -> tuple[int, bytes]:
    ssl_ctx = ssl.create_default_context() if target.scheme == "https" else None
    reader, writer = await asyncio.open_connection(
        target.host,
        target.port,
        ssl=ssl_ctx,
        server_hostname=target.host if ssl_ctx else None,
    )
    try:
        head = (
            f"POST {target.path} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in _headers(body, target).items())
            + "\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def ainvalidate(
    tags: Iterable[str] | str | None = None,
    urls: Iterable[str] | str | None = None,
    prefixes: Iterable[str] | str | None = None,
    all: bool = False,
    soft: bool = False,
) -> InvalidationResult:
    """Async twin of :func:`invalidate`, using asyncio streams (no thread pool).

    The whole exchange (connect, send, receive) is bounded by ``BEXT_TIMEOUT``.
    """
    payload = build_payload(tags, urls, prefixes, all, soft)
    if not conf.enabled():
        return _DISABLED
    try:
        target = _target()
        body = json.dumps(payload).encode()
        status, raw = await asyncio.wait_for(_async_post(target, body), conf.timeout())
    except asyncio.TimeoutError:
        return _failure(payload, TimeoutError(f"timed out after {conf.timeout()} s"))
    except (OSError, http.client.HTTPException, ValueError, asyncio.IncompleteReadError) as exc:
        return _failure(payload, exc)
    return _result(status, raw, payload)
