"""The numbers that bound what one HTTP/2 connection may make bext hold or do.

Header sizes, the body size and the timeouts are shared with HTTP/1.1
(:class:`~bext.protocol.events.ParserLimits`, :class:`~bext.worker.context.Timeouts`); these
are the ones only HTTP/2 has: stream concurrency, flow-control windows and the rate limits
against the HTTP/2 resource-exhaustion attacks (rapid reset, SETTINGS and PING floods).
"""

from __future__ import annotations

from dataclasses import dataclass

HTTP2_ENGINES = ("auto", "nghttp2", "h2")
"""``server.http2.engine`` values (see :mod:`bext.protocol.h2_engine`)."""


@dataclass(frozen=True, slots=True)
class H2Limits:
    engine: str = "auto"
    """The HTTP/2 protocol library: ``"nghttp2"`` (libnghttp2 through ``ngh2``), ``"h2"``
    (pure Python) or ``"auto"`` (nghttp2 when ``ngh2`` is installed, else h2). Every limit
    below applies the same on both: bext enforces them, not the library."""

    h2c: bool = True
    """Accept cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3) on plain listeners."""

    max_concurrent_streams: int = 128
    """SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once (nginx's value).

    Streams over it are refused one by one (RST_STREAM), the connection survives.
    """

    initial_window_size: int = 256 * 1024
    """SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a client may send on one stream
    before bext acknowledges them.

    bext acknowledges a body only as the handler consumes it, so this is also what a stream
    can make bext buffer. 256 KiB is the RequestBody high-water mark and the static file chunk
    size: large enough that an upload is not throttled by round trips on a typical link
    (256 KiB per 20 ms RTT = 12 MB/s per stream), small enough that 128 streams cannot pin
    more than the connection window below.
    """

    connection_window: int = 1024 * 1024
    """The connection's receive window: unconsumed body bytes across all its streams.

    Bounds memory per connection whatever the number of streams (4 streams' worth); the cost
    is that four uploads stuck behind slow upstreams stall the others on the connection.
    """

    header_table_size: int = 4096
    """SETTINGS_HEADER_TABLE_SIZE: the HPACK decoder's dynamic table (the RFC default)."""

    max_frame_size: int = 16384
    """SETTINGS_MAX_FRAME_SIZE we accept (the RFC minimum; larger frames only cost memory)."""

    rate_window: float = 10.0
    """The period, in seconds, over which the three counts below are measured."""

    max_resets: int = 200
    """Streams the client may cancel (or have refused) per ``rate_window`` before the
    connection is closed with ENHANCE_YOUR_CALM (CVE-2023-44487, rapid reset).

    A browser leaving a page cancels at most one burst of ``max_concurrent_streams``.
    """

    max_settings: int = 50
    """SETTINGS frames per ``rate_window`` (each one costs an ACK; clients send one or two)."""

    max_pings: int = 100
    """PING frames per ``rate_window`` (each one costs an ACK; keep-alive and RTT probes)."""

    max_empty_frames: int = 100
    """DATA frames per ``rate_window`` that carry no bytes and do not end the stream
    (CVE-2019-9518): legal, useless, and each one costs an h2 event."""

    max_output_buffer: int = 1024 * 1024
    """Bytes queued towards a client that does not read before the connection is dropped.

    Response bodies wait for the transport to drain, so only frames the client provokes
    (ACKs, resets, response heads) can grow the buffer past the transport's high-water mark.
    """
