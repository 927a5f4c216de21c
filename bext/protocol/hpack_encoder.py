"""A stateless HPACK encoder for HTTP/2 response headers (RFC 7541), in place of hpack's.

hpack's ``Encoder`` keeps a dynamic table: for every field of every response it searches
the table, inserts, evicts and Huffman-codes in pure Python, a fifth of bext's HTTP/2 cost
per request. Like nginx, bext never inserts into the dynamic table. Each field is then
either a static-table index (name and value match, e.g. ``:status: 200``) or a literal
without indexing, with the static table's index for the name when it has one, and its
encoding depends on the field alone, so it is cached (per process, for every connection),
Huffman coding included (a string is Huffman-coded when that makes it shorter). A response
then costs a few dozen bytes more than with a dynamic table, about what nginx sends.

Credentials (``set-cookie``, ``authorization``, ...) are literals *never indexed*, so no
intermediary puts them in its own table.

Every header block starts with a dynamic table size update to 0 until the first one has
gone out, and again after the peer changes SETTINGS_HEADER_TABLE_SIZE: the decoder then
knows this encoder's table is empty and stays empty, whatever limit it had set (RFC 7541
§4.2, §6.3).
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack import Encoder
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

MAX_CACHED = 4096
"""Distinct fields kept encoded; the cache is emptied when it is full (dates, lengths and
ETags vary, so it would otherwise grow without bound)."""
MAX_CACHED_FIELD = 256
"""Longer fields (a big Content-Security-Policy, say) are encoded each time, so the cache
stays within about MAX_CACHED x (MAX_CACHED_FIELD + overhead) bytes, a few MiB at most."""

NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})

_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _FULL.setdefault((_name, _value), _index)
    _NAME.setdefault(_name, _index)

_SIZE_UPDATE_TO_ZERO = b"\x20"
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)  # RFC 7541 Appendix B
_CACHE: dict[tuple[bytes, bytes], bytes] = {}  # field -> encoding, shared by all connections


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1: ``value`` with an N-bit prefix; ``first`` carries the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(data: bytes) -> bytes:
    """RFC 7541 §5.2: Huffman-coded (H = 1) when shorter, else raw octets."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        return encode_integer(len(coded), 7, 0x80) + coded
    return encode_integer(len(data), 7, 0x00) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One header field as this encoder writes it (uncached)."""
    full = _FULL.get((name, value))
    if full is not None and name not in NEVER_INDEXED:
        return encode_integer(full, 7, 0x80)  # indexed field
    pattern = 0x10 if name in NEVER_INDEXED else 0x00  # never indexed / without indexing
    name_index = _NAME.get(name)
    if name_index is not None:
        return encode_integer(name_index, 4, pattern) + encode_string(value)
    return bytes((pattern,)) + encode_string(name) + encode_string(value)


class StaticEncoder(Encoder):
    """Drop-in for ``hpack.Encoder`` in ``h2.connection.H2Connection.encoder``.

    Fields must already be lowercase ``bytes`` pairs (h2 turns ``str`` into ``bytes``
    before encoding; bext's response headers are lowercase).
    """

    def __init__(self) -> None:
        super().__init__()
        self._announce = True

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._announce = True  # the peer's limit changed: restate that ours is 0

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:  # type: ignore[override]
        cache = _CACHE
        parts = []
        if self._announce:
            self._announce = False
            parts.append(_SIZE_UPDATE_TO_ZERO)
        for field in headers:
            name, value = field[0], field[1]
            encoded = cache.get((name, value))
            if encoded is None:
                encoded = encode_field(name, value)
                # Credentials are one-off values and stay out of a long-lived cache.
                if len(name) + len(value) <= MAX_CACHED_FIELD and name not in NEVER_INDEXED:
                    if len(cache) >= MAX_CACHED:
                        cache.clear()
                    cache[(name, value)] = encoded
            parts.append(encoded)
        return b"".join(parts)
