"""HTTP/3 for one worker: the UDP socket of its slot, routed to QUIC connections by CID.

The master binds one SO_REUSEPORT UDP socket per worker slot on the TLS port and the
worker for slot *i* serves socket *i* alone, so no two processes read the same socket
(reading one socket from several processes scatters a connection's packets among
strangers). :func:`start_h3` turns that socket into an :class:`H3Server`.

Why not ``aioquic.asyncio.server.QuicServer``: it would have to be overridden in every
place bext needs something else, which is most of it -- a cap on connections and on
handshakes in progress, refusing new connections while draining, CONNECTION_REFUSED
instead of silence, no per-connection ``asyncio.Event``/``StreamReader`` machinery, its
own timer and transmit scheduling, and statistics. So this module drives
:class:`~aioquic.quic.connection.QuicConnection` objects directly (through
:class:`~bext.protocol.quic_session.QuicSession`) and uses aioquic only for the stateless
packet helpers: header parsing, Version Negotiation, Retry packets and tokens.

Datagram handling, all stateless until a connection exists:

- unparseable datagrams, short headers for unknown connection IDs, Initials smaller than
  1200 bytes (RFC 9000 §14.1) or with a destination CID under 8 bytes (§7.2), and other
  long-header packets for unknown connections are dropped without a reply;
- an unsupported version gets a Version Negotiation packet (never in reply to one);
- a new Initial while the worker is full or draining gets CONNECTION_REFUSED, so the
  client falls back to TCP at once instead of timing out; so does one from an address
  that holds ``server.max_connections_per_ip`` connections already (TCP and QUIC, all
  workers together: :meth:`WorkerContext.reserve`);
- with ``retry`` on, an Initial without a token gets a Retry, and one with a token that is
  not ours, expired or for another address gets INVALID_TOKEN (RFC 9000 §8.1). Only then
  is a connection (and a TLS handshake) started.

Certificates are loaded once per :class:`H3Server`. aioquic's TLS presents one certificate
per configuration; the one matching the client's SNI (exact host, then ``*.`` wildcard
for one label, then the default) is chosen by reading the ClientHello as it is handed to
TLS, before aioquic answers it (see ``_SniPeek`` in :mod:`bext.protocol.quic_session`).

Not done here: stateless resets for unknown short-header packets (their tokens die with the
connection), 0-RTT and session resumption (no ticket store shared by workers), connection
migration to another worker (steering by CID needs the master's eBPF program).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY, NetworkAddress
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicHeader,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import load_pem_private_key, load_pem_x509_certificates

from bext.protocol.h3_limits import Admission, H3Limits
from bext.protocol.quic_session import Identity, QuicSession, SigningKey, check_aioquic
from bext.tls.certs import SNITable
from bext.worker.context import WorkerContext
from bext.worker.h3_connection import H3Connection

log = logging.getLogger("bext")

CID_LENGTH = 8
"""Length of the connection IDs bext issues (short headers carry no length)."""

_MIN_INITIAL = 1200
"""RFC 9000 §14.1: a client's Initial datagram is padded to at least this size."""

_HEAD_WINDOW = 32 * 1024
"""Smallest first receive window of a stream (the initial ``max_stream_data``)."""

_SOCKET_BUFFER = 4 * 1024 * 1024
"""Ask for UDP socket buffers this large (the kernel caps it at net.core.[rw]mem_max)."""


@dataclass(frozen=True)
class H3Certificates:
    """Where the certificates are: the default one, and per-host ones chosen by SNI.

    PEM files; ``cert`` may hold the whole chain (leaf first). ``sni`` host patterns are
    exact names or ``*.example.com`` (one label, as TLS wildcards match).
    """

    cert: Path
    key: Path
    sni: Sequence[tuple[tuple[str, ...], Path, Path]] = ()


@dataclass(slots=True)
class H3Stats:
    """What the endpoint did with datagrams it could not hand to a connection."""

    accepted: int = 0
    refused: int = 0
    retries: int = 0
    invalid_tokens: int = 0
    version_negotiations: int = 0
    dropped: int = 0


async def start_h3(
    sock: socket.socket, ctx: WorkerContext, certificate: H3Certificates, limits: H3Limits
) -> H3Server:
    """Serve HTTP/3 on ``sock`` (bound, non-blocking UDP) until ``shutdown``/``close``."""
    loop = asyncio.get_running_loop()
    server = H3Server(ctx, certificate, limits)
    _grow_buffers(sock)
    await loop.create_datagram_endpoint(lambda: server, sock=sock)
    return server


class H3Server(asyncio.DatagramProtocol):
    def __init__(self, ctx: WorkerContext, certificates: H3Certificates, limits: H3Limits) -> None:
        check_aioquic()
        self._ctx = ctx
        self._limits = limits
        head_window = max(_HEAD_WINDOW, 2 * ctx.limits.max_header_size)
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=["h3"],
            connection_id_length=CID_LENGTH,
            idle_timeout=limits.idle_timeout or ctx.timeouts.keepalive,
            max_datagram_size=limits.max_datagram_size,
            max_data=limits.connection_window,
            # A request stream's first window bounds its header block (see H3Session);
            # it widens to stream_window once the head has been decoded.
            max_stream_data=min(limits.stream_window, head_window),
        )
        configuration.certificate, configuration.certificate_chain, configuration.private_key = (
            load_identity(certificates.cert, certificates.key)
        )
        self._configuration = configuration
        self._identities: SNITable[Identity] | None = None
        if certificates.sni:
            # The same matching as the TCP listener's SNI callback (bext.tls).
            self._identities = SNITable(
                (hosts, load_identity(cert, key)) for hosts, cert, key in certificates.sni
            )
        self._versions = frozenset(configuration.supported_versions)
        self._retry = QuicRetryTokenHandler() if limits.retry else None
        self._admission = Admission(limits.max_connections, limits.max_handshakes)
        self._routes: dict[bytes, H3Connection] = {}
        self._connections: set[H3Connection] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._server_port = 0
        self._accepting = True
        self._loop = asyncio.get_running_loop()
        self._all_gone: asyncio.Event | None = None
        self.stats = H3Stats()

    # -- public ------------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """QUIC connections open now (handshaking, serving or draining)."""
        return len(self._connections)

    @property
    def active(self) -> bool:
        """Whether any connection is still open: the worker waits for this when draining."""
        return bool(self._connections)

    def shutdown(self) -> None:
        """Stop accepting connections; GOAWAY every one, each closes when its requests end.

        Datagrams of existing connections are still served until they are gone, so the
        socket must stay with this worker meanwhile; :meth:`wait_closed` waits for that.
        """
        self._accepting = False
        for conn in list(self._connections):
            conn.shutdown()

    async def wait_closed(self) -> None:
        """Return once every connection has ended (after :meth:`shutdown`)."""
        if self._connections:
            if self._all_gone is None:
                self._all_gone = asyncio.Event()
            await self._all_gone.wait()

    def close(self) -> None:
        """Close every connection now and stop using the socket."""
        self._accepting = False
        for conn in list(self._connections):
            conn.abort()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- asyncio.DatagramProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple):
            self._server_port = sockname[1]

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            self._dispatch(data, addr)
        except Exception:  # one bad datagram must never stop the endpoint
            log.exception("HTTP/3: datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("HTTP/3 socket error: %s", exc)  # ICMP errors for some peer: not ours to fix

    # -- endpoint services for connections (QuicEndpoint) -------------------------------------

    def send_datagram(self, data: bytes, addr: NetworkAddress) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    def route(self, cid: bytes, conn: H3Connection) -> None:
        self._routes[cid] = conn
        conn.cids.add(cid)

    def unroute(self, cid: bytes) -> None:
        conn = self._routes.pop(cid, None)
        if conn is not None:
            conn.cids.discard(cid)

    def handshake_done(self, conn: H3Connection) -> None:
        self._admission.handshake_done()

    def connection_gone(self, conn: H3Connection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        for cid in conn.cids:
            if self._routes.get(cid) is conn:
                del self._routes[cid]
        conn.cids.clear()
        self._admission.closed(conn.handshaking)
        if not self._connections and self._all_gone is not None:
            self._all_gone.set()

    # -- datagrams ---------------------------------------------------------------------------------

    def _dispatch(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            self.stats.dropped += 1
            return
        conn = self._routes.get(header.destination_cid)
        if conn is not None:
            conn.datagram_received(data, addr)
            return
        version = header.version
        if version is None or header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
            self.stats.dropped += 1  # a short header for no connection of ours, or a VN
            return
        if version not in self._versions:
            if len(data) >= _MIN_INITIAL:
                self.stats.version_negotiations += 1
                self.send_datagram(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=self._configuration.supported_versions,
                    ),
                    addr,
                )
            else:
                self.stats.dropped += 1
            return
        if (
            header.packet_type != QuicPacketType.INITIAL
            or len(data) < _MIN_INITIAL
            or len(header.destination_cid) < 8
        ):
            self.stats.dropped += 1
            return
        refusal = self._refusal()
        if refusal is not None:
            self.stats.refused += 1
            log.info("HTTP/3: refusing a connection from %s: %s", addr[0], refusal)
            self._close_initial(version, header, addr, QuicErrorCode.CONNECTION_REFUSED)
            return
        retry_source_cid: bytes | None = None
        if self._retry is None:
            original_cid = header.destination_cid
        elif not header.token:
            self.stats.retries += 1
            source_cid = os.urandom(CID_LENGTH)
            token = self._retry.create_token(
                address=addr,
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid,
                now=self._loop.time(),
            )
            self.send_datagram(
                encode_quic_retry(
                    version=version,
                    source_cid=source_cid,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid,
                    retry_token=token,
                ),
                addr,
            )
            return
        else:
            try:
                original_cid = self._retry.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=self._loop.time(),
                )
            except ValueError:
                self.stats.invalid_tokens += 1
                self._close_initial(version, header, addr, QuicErrorCode.INVALID_TOKEN)
                return
            retry_source_cid = header.destination_cid
        if not self._ctx.reserve(str(addr[0])):  # max_connections_per_ip, shared with TCP
            self.stats.refused += 1
            self._close_initial(version, header, addr, QuicErrorCode.CONNECTION_REFUSED)
            return
        self._accept(data, addr, header.destination_cid, original_cid, retry_source_cid)

    def _refusal(self) -> str | None:
        if not self._accepting or self._ctx.stopping:
            return "draining"
        ctx = self._ctx
        return self._admission.refusal(len(ctx.connections), ctx.max_connections)

    def _close_initial(self, version: int, header: QuicHeader, addr: NetworkAddress,
                       code: int) -> None:  # fmt: skip
        """Answer an Initial with CONNECTION_CLOSE (refused, bad token) and nothing else."""
        self.send_datagram(
            _initial_close(version, header.destination_cid, header.source_cid, code), addr
        )

    def _accept(
        self,
        data: bytes,
        addr: NetworkAddress,
        destination_cid: bytes,
        original_cid: bytes,
        retry_source_cid: bytes | None,
    ) -> None:
        peer = str(addr[0])  # reserved by _dispatch
        try:
            quic = QuicSession(
                configuration=self._configuration,
                original_destination_connection_id=original_cid,
                retry_source_connection_id=retry_source_cid,
                limits=self._limits,
                choose_identity=self._identities.lookup if self._identities is not None else None,
            )
            # Admitted by its constructor (ctx.admit), which claims the reservation.
            conn = H3Connection(self, quic, self._ctx, self._limits, addr, self._server_port)
        except BaseException:
            self._ctx.unreserve(peer)
            raise
        self.stats.accepted += 1
        self._admission.opened()
        self._connections.add(conn)
        self.route(destination_cid, conn)
        self.route(quic.host_cid, conn)
        conn.datagram_received(data, addr)


def load_identity(cert: Path, key: Path) -> Identity:
    """A certificate chain (leaf first) and its key from PEM files."""
    chain = load_pem_x509_certificates(cert.read_bytes())
    if not chain:
        raise ValueError(f"{cert}: no certificate")
    private_key = load_pem_private_key(key.read_bytes())
    if not isinstance(private_key, SigningKey):
        raise ValueError(f"{key}: unsupported key type for TLS")
    return chain[0], chain[1:], private_key


def _initial_close(version: int, client_cid: bytes, peer_cid: bytes, error_code: int) -> bytes:
    """A server Initial with CONNECTION_CLOSE, before any connection state exists.

    Initial keys derive from the client's destination CID alone (RFC 9001 §5.2), so this
    needs nothing but the client's header.
    """
    crypto = CryptoPair()
    crypto.setup_initial(cid=client_cid, is_client=False, version=version)
    builder = QuicPacketBuilder(
        host_cid=client_cid,
        peer_cid=peer_cid,
        version=version,
        is_client=False,
        max_datagram_size=_MIN_INITIAL,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(
        QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY
    )
    buf.push_uint_var(error_code)
    buf.push_uint_var(QuicFrameType.PADDING)  # the frame type that caused it: none
    buf.push_uint_var(0)  # no reason phrase
    datagrams, _ = builder.flush()
    return datagrams[0]


def _grow_buffers(sock: socket.socket) -> None:
    """Larger UDP buffers absorb bursts (a congestion window arrives at once)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < _SOCKET_BUFFER:
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        except OSError:
            pass
