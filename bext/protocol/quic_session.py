"""bext's subclasses of aioquic's QUIC connection and HTTP/3 layer, and the SNI peek.

aioquic (1.7) offers no public hook for some of what bext needs, so a few internals are
used, each in one place, checked at start (:func:`check_aioquic`) and exercised by the
tests:

- :class:`QuicSession`: the receive credit policy (``_write_stream_limits``), the number of
  concurrent streams (``_local_max_streams_*``: ``QuicConfiguration`` has no field for
  it), a stream's send backlog (its sender's buffer offsets) and the certificate choice by
  SNI (``_initialize`` wraps the new TLS context, see :class:`_SniPeek`);
- :class:`H3Session`: no QPACK dynamic table (``_init_connection``).

:class:`~bext.worker.h3_connection.H3Connection` drives both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import pylsqpack
from aioquic import tls
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.h3.connection import H3Connection as H3Protocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, Limit, QuicConnection
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream, QuicStreamSender
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from bext.protocol.h3_limits import H3Limits, stream_credit

SigningKey: TypeAlias = (
    dsa.DSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | rsa.RSAPrivateKey
)
"""The private key types aioquic's TLS can sign with."""

Identity: TypeAlias = tuple[x509.Certificate, list[x509.Certificate], SigningKey]
"""A certificate, its chain and its private key."""

IdentityChooser = Callable[[str | None], Identity | None]
"""Server name from the ClientHello -> the identity to present (None: the default)."""

_MAX_UNI_STREAMS = 16
"""Unidirectional streams a client may open: HTTP/3 needs three (control, QPACK x2)."""

_MAX_CLIENT_HELLO = 64 * 1024
"""Stop looking for the server name if the ClientHello is not complete by then."""


class QuicSession(QuicConnection):
    """aioquic's server connection with bext's stream limit, credit policy and SNI choice."""

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        original_destination_connection_id: bytes,
        retry_source_connection_id: bytes | None,
        limits: H3Limits,
        choose_identity: IdentityChooser | None,
    ) -> None:
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        # Announced in the transport parameters, which are built later (_initialize).
        self._local_max_streams_bidi = Limit(
            QuicFrameType.MAX_STREAMS_BIDI, "max_streams_bidi", limits.max_streams
        )
        self._local_max_streams_uni = Limit(
            QuicFrameType.MAX_STREAMS_UNI, "max_streams_uni", _MAX_UNI_STREAMS
        )
        self.stream_window = limits.stream_window
        self.flowing: set[int] = set()
        """Request streams whose body is being consumed: only these get more credit."""
        self._choose_identity = choose_identity

    def send_backlog(self, stream_id: int) -> int:
        """Bytes of ``stream_id`` QUIC still holds: not yet sent or not yet acknowledged."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start

    def responses_unacknowledged(self) -> bool:
        """Whether a request stream still has response data (or its end) not acknowledged."""
        return any(
            not stream.sender.is_finished
            for stream_id, stream in self._streams.items()
            if not stream_id & 3
        )

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if self._choose_identity is not None:
            # The TLS context is created here, before the first CRYPTO frame reaches it.
            setattr(self.tls, "handle_message", _SniPeek(self.tls, self._choose_identity))  # noqa: B010

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        if stream_id is None or stream_id & 3:
            # Not a request stream (the client's control and QPACK streams): aioquic's
            # doubling policy is fine for those few bytes.
            super()._write_stream_limits(builder, space, stream)
            return
        # Called for every stream in every packet built: the common case is one set lookup.
        limit = stream.max_stream_data_local
        if stream_id in self.flowing:
            limit = stream.max_stream_data_local = stream_credit(
                limit, stream.receiver.highest_offset, self.stream_window, True
            )
        if stream.max_stream_data_local_sent != limit:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(limit)
            stream.max_stream_data_local_sent = limit


def check_aioquic() -> None:
    """Fail at start, not silently under load, if the aioquic internals used here moved."""
    sender = QuicStreamSender(0, True)
    needed = [
        (QuicConnection, "_write_stream_limits"),
        (QuicConnection, "_initialize"),
        (QuicConnection, "_on_max_stream_data_delivery"),
        (H3Protocol, "_init_connection"),
        (sender, "_buffer_start"),
        (sender, "_buffer_stop"),
    ]
    missing = [name for owner, name in needed if not hasattr(owner, name)]
    if missing:
        raise RuntimeError(f"unsupported aioquic version: no {', '.join(missing)}")


class _SniPeek:
    """Stands in for ``tls.Context.handle_message`` until the ClientHello has been seen.

    aioquic's TLS context presents the one certificate it was given and does not keep the
    server name it parsed. So the handshake bytes are read here first: once the ClientHello
    is complete its ``server_name`` picks the certificate and key, which are set on the
    context before aioquic's own handler runs (and negotiates the signature algorithm for
    that key). After that every call passes straight through.
    """

    __slots__ = ("_choose", "_context", "_handle", "_pending")

    def __init__(self, context: tls.Context, choose: IdentityChooser) -> None:
        self._context = context
        self._handle = context.handle_message
        self._choose = choose
        self._pending: bytes | None = b""

    def __call__(self, input_data: bytes, output_buf: dict[tls.Epoch, Buffer]) -> None:
        pending = self._pending
        if pending is not None:
            pending += input_data
            complete, server_name = peek_server_name(pending)
            if complete:
                self._pending = None
                identity = self._choose(server_name)
                if identity is not None:
                    context = self._context
                    context.certificate, context.certificate_chain = identity[0], identity[1]
                    context.certificate_private_key = identity[2]
            else:
                self._pending = pending if len(pending) <= _MAX_CLIENT_HELLO else None
        self._handle(input_data, output_buf)


def peek_server_name(data: bytes) -> tuple[bool, str | None]:
    """(the ClientHello is complete, its server name) from the first handshake bytes."""
    if len(data) < 4:
        return False, None
    if data[0] != tls.HandshakeType.CLIENT_HELLO:
        return True, None
    end = 4 + int.from_bytes(data[1:4], "big")
    if len(data) < end:
        return False, None
    try:
        return True, tls.pull_client_hello(Buffer(data=data[:end])).server_name
    except (ValueError, tls.Alert):
        return True, None  # aioquic's own parser raises the proper alert next


class H3Session(H3Protocol):
    """aioquic's HTTP/3 layer without a QPACK dynamic table.

    pylsqpack decodes a whole header block with no bound on the decoded size, so with a
    dynamic table a small block of one-byte references to a large table entry expands a
    thousandfold (a "QPACK bomb"). Without one, a reference can only name a static table
    entry (under 100 bytes), and the block itself is capped by the request stream's first
    receive window, which grows only once the head was decoded. The cost is that clients
    cannot compress repeated request fields (cookies) across requests.
    """

    def _init_connection(self) -> None:
        # Runs at the end of H3Connection.__init__, before SETTINGS are sent.
        self._max_table_capacity = 0
        self._blocked_streams = 0
        self._decoder = pylsqpack.Decoder(0, 0)
        super()._init_connection()
