"""What every connection of one worker shares: the pipeline, limits, timeouts, logs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from bext import __version__
from bext.http.date import date_line
from bext.http.message import Request, Response
from bext.limits.connections import ConnectionLimits
from bext.observe.accesslog import AccessLog
from bext.protocol.events import Event, Headers, ParserLimits, ProtocolError
from bext.protocol.h2_limits import H2Limits
from bext.shm.counters import NullCounters, SlotCounters

if TYPE_CHECKING:
    from bext.observe.otlp import SpanRecorder


class RequestHandler(Protocol):
    """The request pipeline as connections see it.

    A handler that can answer without waiting returns the Response itself, so the HTTP/1.1
    fast path does not create a task per request; otherwise it returns an awaitable.
    """

    def handle(self, request: Request) -> Response | Awaitable[Response]: ...


QuickLane = Callable[[str, "str | None", bytes, str, Headers], "tuple[Response, Any] | None"]
"""``(method, host, target, scheme, header fields)`` of a body-less request to its final response
and route (what ``request.route`` would be), or None: the request takes the full path
(``handler.handle``)."""


class RequestParser(Protocol):
    """The sans-IO HTTP/1.1 parser interface both engines implement."""

    def feed(self, data: bytes) -> list[Event]: ...

    @property
    def in_head(self) -> bool: ...

    @property
    def upgrade_pending(self) -> bool: ...

    @property
    def pending_error(self) -> ProtocolError | None: ...

    def take_upgrade_tail(self) -> bytes: ...

    def decline_upgrade(self) -> list[Event]: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    header: float = 15.0
    body: float = 60.0
    keepalive: float = 75.0
    send: float = 60.0
    body_min_rate: int = 0
    """Bytes/s a request body must average over ``BODY_RATE_WINDOW`` seconds (0: off)."""
    lingering: float = 0.0
    """How long a connection closing with unread input drains it first (0: close at once)."""


BODY_RATE_WINDOW = 30.0
"""The span ``body_min_rate`` is averaged over: a slow start or a pause is forgiven."""


class WorkerState:
    """What every listener of one worker shares, by reference: one object per worker.

    Listener contexts (plain HTTP, TLS) each point at the same state, so a graceful stop
    that sets :attr:`stopping` is seen by every connection of every listener at once. It
    was once a field copied into each listener's context, and TLS connections never
    learned that their worker was draining.
    """

    __slots__ = ("access_log", "connections", "counters", "limits", "stopping")

    def __init__(self, access_log: AccessLog, counters: SlotCounters | None = None) -> None:
        self.stopping = False
        self.connections: set[ConnectionLike] = set()
        self.counters: SlotCounters = counters if counters is not None else NullCounters()
        self.access_log = access_log
        self.limits: ConnectionLimits | None = None
        """The worker's connection limits (:mod:`bext.limits.connections`), set by the
        worker; without them (connections served outside a master) ``max_connections``
        simply refuses."""


@dataclass(eq=False)
class WorkerContext:
    """One listener's view of its worker: the pipeline and settings it serves with.

    ``state`` (stopping, the connection set, counters, the access log) is shared with the
    worker's other listener contexts; ``connections``, ``counters`` and ``access_log`` are
    the state's own objects, reachable directly because connections use them per read.
    """

    handler: RequestHandler
    parser_factory: Callable[[ParserLimits], RequestParser]
    limits: ParserLimits
    timeouts: Timeouts
    access_log: AccessLog
    scheme: str = "http"
    server_tokens: bool = True
    max_keepalive_requests: int = 1000
    max_connections: int = 10000
    counters: SlotCounters = field(default_factory=NullCounters)
    extra_headers: Headers = field(default_factory=list)
    """Fields added to every response on this context's listener (HSTS, Alt-Svc on TLS)."""
    h2: H2Limits = field(default_factory=H2Limits)
    state: WorkerState | None = None
    """Given by :meth:`for_listener`; a context built directly makes its own."""
    otlp: SpanRecorder | None = None
    """The worker's span recorder with ``[metrics] otlp_endpoint`` set; None: off."""
    quick: QuickLane | None = field(init=False)
    """The handler's quick lane (:meth:`bext.worker.pipeline.Pipeline.quick`) for HTTP/1.1,
    when it has one."""
    records_requests: bool = field(init=False)
    """:meth:`record` reads more of a request than its route and start time (the access
    log, OTLP): the HTTP/1.1 quick lane then builds a Request to record."""
    shared: WorkerState = field(init=False)
    """The worker's state (``state``, made if none was given): read ``shared.stopping``."""
    connections: set[ConnectionLike] = field(init=False)
    _date: bytes = b""
    _preamble: bytes = b""
    _fields: Headers = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = WorkerState(self.access_log, self.counters)
        self.shared = self.state
        self.access_log = self.shared.access_log
        self.counters = self.shared.counters
        self.connections = self.shared.connections
        self.quick = getattr(self.handler, "quick_lane", None)
        self.records_requests = self.access_log.enabled or self.otlp is not None
        self._server_value = b"bext/" + __version__.encode() if self.server_tokens else b"bext"
        self._server_line = b"Server: " + self._server_value + b"\r\n"
        self._extra_lines = b"".join(
            name + b": " + value + b"\r\n" for name, value in self.extra_headers
        )

    @property
    def stopping(self) -> bool:
        """The worker drains: finish what is in flight, keep no connection alive."""
        return self.shared.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.shared.stopping = value

    def admit(self, conn: ConnectionLike, peer: str) -> bool:
        """Count a new connection from ``peer`` in; False (nothing counted) if over a limit.

        The one place connection limits are applied, for every protocol. In a worker,
        ``max_connections`` never refuses here: its acceptors stop accepting while it is
        full (:mod:`bext.worker.accept`), and ``max_connections_per_ip`` was checked
        when the connection was accepted (:meth:`reserve`); only a connection that no
        acceptor reserved (HTTP/3 reserves too) is checked against it here.
        """
        connections = self.connections
        limits = self.shared.limits
        if limits is None:
            if len(connections) >= self.max_connections:
                return False
        elif not limits.admit(conn, peer):
            return False
        connections.add(conn)
        self.counters.connection_opened(getattr(conn, "metric_version", 0))
        return True

    def reserve(self, peer: str) -> bool:
        """A connection from ``peer`` is about to start (accepted, before TLS): False, and
        counted as refused, if ``peer`` holds ``max_connections_per_ip`` already. The
        connection's :meth:`admit` claims the reservation; :meth:`unreserve` returns it
        if no connection comes of it."""
        limits = self.shared.limits
        return limits is None or limits.reserve(peer)

    def unreserve(self, peer: str) -> None:
        limits = self.shared.limits
        if limits is not None:
            limits.unreserve(peer)

    def hand_over(self, old: ConnectionLike, new: ConnectionLike) -> None:
        """The same client connection goes on under another protocol object (h2c)."""
        self.connections.discard(old)
        self.connections.add(new)
        self.counters.metrics.connection_switched(
            getattr(old, "metric_version", 0), getattr(new, "metric_version", 0)
        )
        limits = self.shared.limits
        if limits is not None:
            limits.hand_over(old, new)

    def leave(self, conn: ConnectionLike) -> None:
        """A connection admitted by :meth:`admit` (or handed over) is gone."""
        connections = self.connections
        if conn in connections:
            connections.discard(conn)
            self.counters.connection_closed(getattr(conn, "metric_version", 0))
            limits = self.shared.limits
            if limits is not None:
                limits.left(conn)

    def preamble(self) -> bytes:
        """HTTP/1.1: ``Date``, ``Server`` and the extra fields, serialised once per second."""
        date = date_line()
        if date is not self._date:
            self._refresh(date)
        return self._preamble

    def header_fields(self) -> Headers:
        """HTTP/2 and HTTP/3: the same fields as (lowercase name, value) pairs.

        The list is rebuilt once per second and shared: callers copy, never mutate it.
        """
        date = date_line()
        if date is not self._date:
            self._refresh(date)
        return self._fields

    def record(self, request: Request, status: int, sent: int, now: float) -> None:
        """Count one response in shared memory, write its access-log line and, with OTLP
        export on, queue its span (:mod:`bext.observe.otlp`).

        The one place every HTTP version (and the tunnel switch) accounts for a response.
        """
        route = request.route
        self.counters.response(status, sent, route.index if route is not None else -1,  # type: ignore[attr-defined]
                               now - request.start_time)  # fmt: skip
        log = self.access_log
        if log.enabled:
            log.log(
                request.client_addr,
                f"{request.method} {request.target.decode('latin-1')} HTTP/{request.http_version}",
                status,
                sent,
                request.header(b"referer"),
                request.header(b"user-agent"),
                now - request.start_time,
                request.log_fields(),
            )
        otlp = self.otlp  # OTLP off: this check is all it costs
        if otlp is not None:
            otlp.record(request, status, now)

    def record_unparsed(self, client_addr: str, status: int, sent: int) -> None:
        """Like :meth:`record` for an error answered before a request could be formed."""
        self.counters.response(status, sent)
        if self.access_log.enabled:
            self.access_log.log(client_addr, "-", status, sent, None, None, 0.0)

    def _refresh(self, date: bytes) -> None:
        self._date = date
        self._preamble = date + self._server_line + self._extra_lines
        self._fields = [
            (b"date", date[6:-2]),
            (b"server", self._server_value),
            *((name.lower(), value) for name, value in self.extra_headers),
        ]

    def for_listener(
        self,
        scheme: str,
        handler: RequestHandler | None = None,
        extra_headers: Headers | None = None,
    ) -> WorkerContext:
        """A context for another listener of the same worker (TLS beside plain HTTP).

        The :class:`WorkerState` is shared, not copied, so a graceful stop drains all
        listeners' connections together and every one of them sees ``stopping``.
        """
        return replace(
            self,
            state=self.state,
            scheme=scheme,
            handler=handler or self.handler,
            extra_headers=list(extra_headers) if extra_headers is not None else [],
            _date=b"",
        )


class ConnectionLike(Protocol):
    def shutdown(self) -> None:
        """Finish what is in flight, then close (graceful stop)."""

    def abort(self) -> None:
        """Close now (the graceful deadline passed)."""
