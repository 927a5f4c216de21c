"""Small helpers over header lists shared by the cache modules (no RFC concept of its own)."""

from __future__ import annotations

from bext.protocol.events import Headers

_OWS = b" \t"


def field_lines(headers: Headers, name: bytes) -> list[bytes]:
    """Every value of field ``name`` (lowercase), compared case-insensitively, OWS stripped."""
    return [value.strip(_OWS) for key, value in headers if key.lower() == name]


def has_field(headers: Headers, name: bytes) -> bool:
    """Whether field ``name`` (lowercase) is present, compared case-insensitively."""
    return any(key.lower() == name for key, _ in headers)


def first_line(headers: Headers, name: bytes) -> bytes | None:
    """The first field line of ``name``, or ``None``."""
    for key, value in headers:
        if key.lower() == name:
            return value.strip(_OWS)
    return None


def split_list(value: bytes) -> list[bytes]:
    """Split a comma-separated list (RFC 9110 §5.6.1), honouring quoted strings.

    Empty members are dropped and each member is stripped of whitespace. Never raises.
    """
    items: list[bytes] = []
    buf = bytearray()
    in_quotes = False
    escaped = False
    for byte in value:
        if in_quotes:
            buf.append(byte)
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_quotes = False
        elif byte == 0x22:
            in_quotes = True
            buf.append(byte)
        elif byte == 0x2C:
            items.append(bytes(buf).strip())
            buf.clear()
        else:
            buf.append(byte)
    items.append(bytes(buf).strip())
    return [item for item in items if item]


def unquote(value: bytes) -> bytes:
    """The content of a quoted-string (RFC 9110 §5.6.4), or ``value`` if it is a token.

    An unterminated quoted-string yields everything after the opening quote.
    """
    if not value.startswith(b'"'):
        return value
    out = bytearray()
    escaped = False
    for byte in value[1:]:
        if escaped:
            out.append(byte)
            escaped = False
        elif byte == 0x5C:
            escaped = True
        elif byte == 0x22:
            break
        else:
            out.append(byte)
    return bytes(out)
