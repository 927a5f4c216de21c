"""``respond = { status, body, content_type }``: a fixed response, built once at load."""

from __future__ import annotations

import hashlib

from bext.config.schema import RespondAction
from bext.handlers import QuickAnswer, QuickTarget
from bext.http.message import Request, Response
from bext.protocol.events import Headers


class RespondHandler:
    """A fixed response, shared by every request the rule answers (read-only)."""

    __slots__ = ("response",)

    def __init__(self, action: RespondAction, headers: list[tuple[bytes, bytes]]) -> None:
        content_type = action.content_type.encode("latin-1")
        body = action.body.encode("utf-8")
        fields = [(b"Content-Type", content_type), *headers]
        if action.status == 200 and not any(name.lower() == b"etag" for name, _ in headers):
            fields.append((b"ETag", strong_etag(content_type, body)))
        self.response = Response(action.status, fields, body)
        self.response.shared = True

    def __call__(self, request: Request) -> Response:
        return self.response

    def quick_answer(self, target: QuickTarget) -> QuickAnswer:
        """The same answer anywhere (:data:`~bext.handlers.QuickAnswers`)."""
        return self._quick

    def _quick(self, method: str, headers: Headers) -> Response:
        return self.response


def respond_handler(action: RespondAction, headers: list[tuple[bytes, bytes]]) -> RespondHandler:
    return RespondHandler(action, headers)


def strong_etag(content_type: bytes, body: bytes) -> bytes:
    """A strong validator for a fixed body, computed once at load.

    It lets browsers and caches revalidate, and lets the compression phase keep the
    compressed body of the rule by ETag instead of compressing it for every request. It
    depends on the content only, so every worker and every reload agree on it; the
    Content-Type is part of it because the same bytes under another type are another
    representation. A rule's own ``ETag`` header wins.
    """
    digest = hashlib.blake2b(content_type + b"\n" + body, digest_size=12).hexdigest()
    return b'"' + digest.encode("ascii") + b'"'
