"""``redirect = { to, status }``: a redirect whose target may use ``{path}``/``{query}``.

``{path}`` is the request's path as the client sent it (still percent-encoded, so it stays
a valid URL), ``{query}`` the raw query string without ``?``. A target ending in
``?{query}`` loses the ``?`` when the request had no query.
"""

from __future__ import annotations

from bext.config.schema import RedirectAction
from bext.handlers import Handler
from bext.http.errors import reason_phrase
from bext.http.message import Request, Response
from bext.routing.path import split_target


def redirect_handler(action: RedirectAction, headers: list[tuple[bytes, bytes]]) -> Handler:
    template = action.to
    status = action.status
    needs_path = "{path}" in template
    needs_query = "{query}" in template
    static_location = None if needs_path or needs_query else template.encode("latin-1")
    body = f"{status} {reason_phrase(status)}\n".encode()
    fields = [(b"Content-Type", b"text/plain; charset=utf-8"), *headers]

    def redirect(request: Request) -> Response:
        location = static_location
        if location is None:
            raw_path, raw_query = split_target(request.target)
            text = template
            if needs_query:
                query = raw_query.decode("latin-1")
                if not query:
                    text = text.replace("?{query}", "")
                text = text.replace("{query}", query)
            text = text.replace("{path}", raw_path.decode("latin-1"))
            location = text.encode("latin-1")
        return Response(status, [(b"Location", location), *fields], body)

    return redirect
