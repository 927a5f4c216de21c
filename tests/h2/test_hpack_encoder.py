"""The stateless HPACK encoder: what it writes decodes right with a real HPACK decoder."""

from __future__ import annotations

import pytest
from hpack import Decoder, NeverIndexedHeaderTuple
from hpack.exceptions import InvalidTableSizeError

from bext.protocol import hpack_encoder
from bext.protocol.hpack_encoder import (
    StaticEncoder,
    encode_field,
    encode_integer,
    encode_string,
)

RESPONSE = [
    (b":status", b"200"),  # static table, name and value
    (b":status", b"201"),  # static name, new value
    (b"content-type", b"text/html; charset=utf-8"),
    (b"x-request-id", b"abc"),  # neither
    (b"set-cookie", b"sid=1; HttpOnly"),  # credentials
    (b"x-long", b"v" * 300),  # lengths past the 7-bit prefix
    (b"", b""),
]


def test_round_trip_through_a_real_decoder() -> None:
    encoder, decoder = StaticEncoder(), Decoder()
    for _ in range(3):  # a dynamic table would make later blocks differ; this one must not
        assert decoder.decode(encoder.encode(RESPONSE), raw=True) == RESPONSE
    assert len(decoder.header_table.dynamic_entries) == 0
    decoded = decoder.decode(encoder.encode([(b"set-cookie", b"a=b")]))
    assert isinstance(decoded[0], NeverIndexedHeaderTuple)


def test_wire_format() -> None:
    assert encode_field(b":status", b"200") == b"\x88"  # indexed, static index 8
    # RFC 7541 C.4.1: "www.example.com" Huffman-coded in 12 octets.
    assert encode_string(b"www.example.com") == bytes.fromhex("8cf1e3c2e5f23a6ba0ab90f4ff")
    assert encode_string(b"\x00\x01") == b"\x02\x00\x01"  # raw when Huffman is longer
    # Static name index 4 (:path, 4-bit prefix, without indexing), then the value.
    assert encode_field(b":path", b"www.example.com") == b"\x04" + encode_string(b"www.example.com")
    assert encode_field(b"x-a", b"\x00") == b"\x00" + encode_string(b"x-a") + b"\x01\x00"
    assert encode_field(b"cookie", b"\x00")[:2] == b"\x1f\x11"  # never indexed, index 32
    assert encode_integer(1337, 5, 0) == b"\x1f\x9a\x0a"  # RFC 7541 C.1.2
    assert encode_integer(10, 5, 0) == b"\x0a"  # C.1.1
    assert encode_integer(42, 8, 0) == b"\x2a"  # C.1.3


def test_table_size_update_first_and_after_a_settings_change() -> None:
    encoder = StaticEncoder()
    first = encoder.encode([(b":status", b"200")])
    assert first == b"\x20\x88"
    assert encoder.encode([(b":status", b"200")]) == b"\x88"
    encoder.header_table_size = 0  # what h2 does when the peer's SETTINGS change
    assert encoder.encode([(b":status", b"200")]) == b"\x20\x88"
    # A peer that allows no dynamic table at all decodes every block.
    strict = Decoder()
    strict.max_allowed_table_size = 0
    strict.header_table_size = 0
    assert strict.decode(first, raw=True) == [(b":status", b"200")]
    with pytest.raises(InvalidTableSizeError):
        strict.decode(b"\x3f\xe1\x1f\x88")  # a size update to 4096 is refused: control


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack_encoder, "MAX_CACHED", 8)
    monkeypatch.setattr(hpack_encoder, "_CACHE", {})
    encoder, decoder = StaticEncoder(), Decoder()
    for n in range(50):
        fields = [(b"etag", f'"{n}"'.encode())]
        assert decoder.decode(encoder.encode(fields), raw=True) == fields
        assert len(hpack_encoder._CACHE) <= 8


def test_long_fields_and_credentials_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack_encoder, "_CACHE", {})
    fields = [(b"x-big", b"b" * 300), (b"set-cookie", b"sid=secret"), (b"vary", b"accept")]
    assert Decoder().decode(StaticEncoder().encode(fields), raw=True) == fields
    assert list(hpack_encoder._CACHE) == [(b"vary", b"accept")]
