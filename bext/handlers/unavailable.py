"""Stand-in for actions this build validates but cannot perform yet.

``render = "static"`` and ``proxy`` rules load and show in ``bext check``; until their
handlers land they answer 501 with a message that says so instead of failing obscurely.
"""

from __future__ import annotations

from bext.handlers import Handler
from bext.http.errors import error_response
from bext.http.message import Request, Response


def unavailable_handler(what: str) -> Handler:
    def unavailable(request: Request) -> Response:
        return error_response(
            501, request.header(b"accept"), f"{what} is not available in this build"
        )

    return unavailable
