"""RFC 9113 §8 rules for HTTP/2 request header sections: the HTTP/2 side of
:mod:`bext.protocol.request_fields`.

h2 can validate headers itself, but it treats every malformed request as a connection error
(the whole connection goes, with every other stream on it), where RFC 9113 §8.1.1 asks for
a stream error; and it checks byte by byte in Python. So the connection turns h2's checks
off and calls :func:`check_request` instead.

Malformed requests raise :class:`MalformedRequest` (answered 400, then the stream is reset
with PROTOCOL_ERROR); well-formed requests bext will not serve raise a plain
:class:`~bext.protocol.events.ProtocolError` with their status (405, 413, 414, 417, 431).
"""

from __future__ import annotations

from collections.abc import Sequence

from bext.protocol.events import ParserLimits, ProtocolError, RequestHead
from bext.protocol.request_fields import (
    CONNECTION_SPECIFIC,
    MalformedRequest,
    check_request_fields,
    check_trailers,
)

__all__ = ["CONNECTION_SPECIFIC", "MalformedRequest", "check_request", "check_trailers"]

FIELD_OVERHEAD = 32
"""RFC 9113 §6.5.2: each field counts 32 bytes more than its name and value."""


def check_request(
    fields: Sequence[tuple[bytes, bytes]], limits: ParserLimits, max_list_size: int
) -> RequestHead:
    """Validate a decoded HTTP/2 request header section (see :func:`check_request_fields`).

    ``max_list_size`` is the advertised SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2
    sizes). A ``content-length`` over ``limits.max_body_size`` is refused here (413).
    """
    head = check_request_fields(fields, limits, "2.0", max_list_size, FIELD_OVERHEAD)
    if head.content_length is not None and head.content_length > limits.max_body_size:
        raise ProtocolError(413, "request body larger than max_body_size")
    return head
