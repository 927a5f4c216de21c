"""HTTP/3 limits and the bookkeeping that enforces them, without any I/O.

The UDP side (:mod:`bext.worker.h3_server`) and the per-connection side
(:mod:`bext.worker.h3_connection`) ask these objects questions and act on the answers;
nothing here knows about sockets, timers or aioquic, so the arithmetic is testable alone.

- :class:`H3Limits`: the knobs, frozen, one instance per listener.
- :class:`Admission`: how many connections a worker holds and how many are still in
  the handshake (the expensive, unauthenticated part); decides whether a new one may start.
- :class:`ResetGuard`: the HTTP/3 counterpart of the HTTP/2 "rapid reset" defence. A client
  that opens streams and cancels them makes the server start work (routing, an upstream
  request) for nothing, and QUIC's stream limit does not stop it because every cancelled
  stream hands its credit back. A token bucket allows bursts of cancellations (a browser
  navigating away cancels dozens at once) but not a sustained stream of them.
- :func:`stream_credit`: the receive window policy for request bodies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class H3Limits:
    max_streams: int = 128
    """Concurrent request streams per connection (the QUIC ``initial_max_streams_bidi``).

    QUIC enforces it at the transport: a client cannot open stream n+1 before one closes.
    """

    idle_timeout: float | None = None
    """QUIC idle timeout in seconds; ``None`` means the worker's keep-alive timeout."""

    max_connections: int = 4096
    """QUIC connections one worker holds at once; further Initials are refused."""

    max_handshakes: int = 256
    """Connections still in the TLS handshake at once; further Initials are refused."""

    handshake_timeout: float = 10.0
    """A connection that has not completed its handshake by then is closed."""

    max_datagram_size: int = 1350
    """Largest UDP payload bext sends (QUIC's ``max_udp_payload_size`` for our side).

    1350 fits the usual Internet paths (with tunnels); QUIC itself needs at least 1200.
    """

    retry: bool = True
    """Validate client addresses with a Retry round trip before any handshake work.

    Costs one round trip per new connection; without it a spoofed source address can make
    the server do a TLS handshake (and send up to three times the bytes it received).
    """

    stream_window: int = 256 * 1024
    """Receive credit per request stream beyond what was already received.

    Credit is only extended while the handler keeps up with the body, so one upload holds at
    most about this plus the body buffer's high water mark in memory.
    """

    connection_window: int = 1024 * 1024
    """Initial connection-wide receive credit (aioquic grows it as it is used)."""

    send_buffer: int = 256 * 1024
    """Response bytes per stream that may wait in QUIC's send buffer (unsent or unacked).

    A response stream or file is not read further until the buffer drains below half.
    """

    reset_burst: int = 100
    """Streams the client may cancel in a burst before the connection is closed."""

    reset_rate: float = 10.0
    """Cancelled streams per second the client may keep up indefinitely."""

    def __post_init__(self) -> None:
        if self.max_datagram_size < 1200:
            raise ValueError("max_datagram_size must be at least 1200 (RFC 9000 §14)")
        for name in ("max_streams", "max_connections", "max_handshakes", "stream_window",
                     "connection_window", "send_buffer", "reset_burst"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.reset_rate < 0 or self.handshake_timeout <= 0:
            raise ValueError("reset_rate and handshake_timeout must be positive")


class Admission:
    """Counts a worker's QUIC connections and its handshakes in progress."""

    __slots__ = ("_max_connections", "_max_handshakes", "connections", "handshakes")

    def __init__(self, max_connections: int, max_handshakes: int) -> None:
        self._max_connections = max_connections
        self._max_handshakes = max_handshakes
        self.connections = 0
        self.handshakes = 0

    def refusal(self, other_connections: int = 0, other_limit: int | None = None) -> str | None:
        """Why a new connection may not start now, or None if it may.

        ``other_connections`` / ``other_limit`` let the caller add the worker-wide
        connection count (all protocols) and its limit.
        """
        if self.connections >= self._max_connections:
            return "too many QUIC connections"
        if self.handshakes >= self._max_handshakes:
            return "too many handshakes in progress"
        if other_limit is not None and other_connections >= other_limit:
            return "too many connections"
        return None

    def opened(self) -> None:
        self.connections += 1
        self.handshakes += 1

    def handshake_done(self) -> None:
        self.handshakes -= 1

    def closed(self, handshaking: bool) -> None:
        self.connections -= 1
        if handshaking:
            self.handshakes -= 1


class ResetGuard:
    """A token bucket over streams the client cancelled before their response was complete.

    ``cancelled(now)`` returns False once the bucket is empty: the connection is abusive.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._tokens = float(burst)
        self._last = now

    def cancelled(self, now: float) -> bool:
        tokens = self._tokens + (now - self._last) * self._rate
        self._last = now
        if tokens > self._burst:
            tokens = self._burst
        tokens -= 1.0
        self._tokens = tokens
        return tokens >= 0.0


def stream_credit(limit: int, received: int, window: int, flowing: bool) -> int:
    """The new receive limit (an absolute stream offset) for a request stream.

    While the handler keeps up (``flowing``) the client may send ``window`` bytes beyond
    what arrived; credit grows in steps of a quarter window so that not every packet carries
    a MAX_STREAM_DATA frame. While it does not, the limit stays where it is: the client can
    send what it was already promised and then waits. Credit is never taken back.
    """
    if flowing:
        target = received + window
        if target - limit >= window >> 2:
            return target
    return limit
