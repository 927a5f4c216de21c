"""``respond = { status, body, content_type }``: a fixed response, built once at load."""

from __future__ import annotations

from bext.config.schema import RespondAction
from bext.handlers import Handler
from bext.http.message import Request, Response


def respond_handler(action: RespondAction, headers: list[tuple[bytes, bytes]]) -> Handler:
    """The Response object is shared by every request the rule answers (read-only)."""
    fields = [(b"Content-Type", action.content_type.encode("latin-1")), *headers]
    response = Response(action.status, fields, action.body.encode("utf-8"))

    def respond(_request: Request) -> Response:
        return response

    return respond
