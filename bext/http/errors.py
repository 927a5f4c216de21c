"""Error responses bext generates itself: HTML for browsers, plain text for everyone else."""

from __future__ import annotations

from functools import lru_cache
from html import escape
from http import HTTPStatus

from bext.http.message import Response

_HTML = b"text/html; charset=utf-8"
_TEXT = b"text/plain; charset=utf-8"


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def wants_html(accept: bytes | None) -> bool:
    return accept is not None and b"text/html" in accept


@lru_cache(maxsize=256)
def _error_body(status: int, html: bool, detail: str) -> tuple[bytes, bytes]:
    phrase = reason_phrase(status)
    if html:
        text = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{status} {escape(phrase)}</title></head>\n"
            f"<body><h1>{status} {escape(phrase)}</h1>\n"
            + (f"<p>{escape(detail)}</p>\n" if detail else "")
            + "<hr><p>bext</p></body></html>\n"
        )
        return _HTML, text.encode()
    line = f"{status} {phrase}" + (f": {detail}" if detail else "") + "\n"
    return _TEXT, line.encode()


def error_response(
    status: int,
    accept: bytes | None = None,
    detail: str = "",
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> Response:
    """A small self-contained error page; ``detail`` must be safe to show to clients."""
    content_type, body = _error_body(status, wants_html(accept), detail)
    headers = [(b"Content-Type", content_type)]
    if extra_headers:
        headers.extend(extra_headers)
    return Response(status, headers, body)
