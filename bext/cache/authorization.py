"""Responses to authenticated requests in a shared cache (RFC 9111 §3.5)."""

from __future__ import annotations

from bext.cache._fields import has_field
from bext.cache.directives import CacheControl
from bext.protocol.events import Headers


def has_authorization(request_headers: Headers) -> bool:
    """Whether the request carries ``Authorization`` (RFC 9110 §11.6.2)."""
    return has_field(request_headers, b"authorization")


def reusable_with_authorization(response: CacheControl) -> bool:
    """Whether a shared cache may store or reuse a response for a request with
    ``Authorization`` (RFC 9111 §3.5): only with ``public``, ``s-maxage`` or
    ``must-revalidate`` in the response.
    """
    return response.public or response.s_maxage is not None or response.must_revalidate
