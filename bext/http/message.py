"""Request and Response: what flows through the request pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Hashable, Sequence
from typing import TYPE_CHECKING

from bext.http.body import RequestBody
from bext.http.filebody import FileBody
from bext.observe.tracing import new_request_id
from bext.protocol.events import Headers, RequestHead

if TYPE_CHECKING:
    from bext.proxy.tunnel import Tunnel


class RequestNotes:
    """What request phases learn about a request for later phases and the log to read.

    One per request that needs it (``Request.notes``, made on first use), so requests
    that no phase takes notes on cost nothing. Each field has one writer: the phase named.
    """

    __slots__ = ("cache", "client_ip", "parent_span_id", "request_id", "sampled", "server",
                 "span_id", "trace_id", "upstream", "upstream_time", "waf")  # fmt: skip

    def __init__(self) -> None:
        self.client_ip: str | None = None
        """The client after ``trusted_proxies``, once a phase needed it (a rate limit's
        key): :func:`bext.limits.keys.client_ip` computes and notes it."""
        self.upstream: str | None = None
        """The upstream group a proxy route sent the request to (noted with ``server``)."""
        self.server: str | None = None
        """The server of that group that answered."""
        self.request_id: str | None = None
        """The request id (``bext.observe.tracing``, the WAF): echoed and logged."""
        self.trace_id: str | None = None
        """The W3C trace id the request went upstream with."""
        self.span_id: str | None = None
        """bext's span for this request: the parent id the upstream was given."""
        self.parent_span_id: str | None = None
        """The client's span (its ``traceparent``'s parent id), when bext continued a trace."""
        self.sampled = True
        """The trace's sampled flag (a new trace is sampled)."""
        self.upstream_time: float | None = None
        """Seconds from sending the request upstream to its response head."""
        self.cache: str | None = None
        """The cache phases' outcome (hit, miss, ...), for Cache-Status and the log."""
        self.waf: str | None = None
        """The WAF phase's verdict."""


class Request:
    """One request as the pipeline sees it, whatever HTTP version carried it.

    ``headers`` keeps arrival order with lowercased names and raw byte values: the proxy
    forwards them with little work, and HTTP/2 and HTTP/3 deliver names lowercased anyway.
    """

    __slots__ = (
        "_notes",
        "body",
        "client_addr",
        "client_port",
        "headers",
        "host",
        "http_version",
        "method",
        "path",
        "query",
        "route",
        "scheme",
        "server_port",
        "start_time",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        http_version: str,
        scheme: str,
        client_addr: str,
        client_port: int,
        server_port: int,
        body: RequestBody,
        start_time: float,
        host: str | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.scheme = scheme
        self.client_addr = client_addr
        self.client_port = client_port
        self.server_port = server_port
        self.body = body
        self.start_time = start_time
        self.host = host  # the Host field as received (the parser found it already)
        # Set by the pipeline once the target is split and normalised.
        self.path = ""
        self.query = b""
        self.route: object | None = None
        """The route that matched (a :class:`~bext.worker.pipeline.Route`), once routed."""
        self._notes: RequestNotes | None = None

    @classmethod
    def from_head(
        cls,
        head: RequestHead,
        scheme: str,
        client: tuple[str, int],
        server_port: int,
        body: RequestBody,
        now: float,
        http_version: str | None = None,
    ) -> Request:
        """The Request for a parsed head, as every connection module builds it."""
        return cls(
            head.method,
            head.target,
            head.headers,
            http_version or head.http_version,
            scheme,
            client[0],
            client[1],
            server_port,
            body,
            now,
            head.host,
        )

    @property
    def notes(self) -> RequestNotes:
        """What phases learnt about this request (see :class:`RequestNotes`)."""
        notes = self._notes
        if notes is None:
            notes = self._notes = RequestNotes()
        return notes

    def log_fields(self) -> tuple[tuple[str, str], ...]:
        """What the access log adds after its standard fields: the request id (made now if
        no phase made one), trace id, upstream and its time, the cache's and the WAF's
        outcomes (those known)."""
        notes = self.notes
        if notes.request_id is None:  # every logged request has an id, even unproxied
            notes.request_id = new_request_id()
        fields: list[tuple[str, str]] = [("id", notes.request_id)]
        if notes.trace_id is not None:
            fields.append(("trace", notes.trace_id))
        if notes.server is not None:
            fields.append(("upstream", notes.server))
        if notes.upstream_time is not None:
            fields.append(("upstream_time", f"{notes.upstream_time:.3f}"))
        if notes.cache is not None:
            fields.append(("cache", notes.cache))
        if notes.waf is not None:
            fields.append(("waf", notes.waf))
        return tuple(fields)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r}>"


class Response:
    """A response: a status, header fields and either ``body`` bytes or a ``stream``.

    Header names are written as given on HTTP/1.1 and lowercased on HTTP/2 and HTTP/3.
    ``content_length`` states a stream's length when known, so HTTP/1.1 can avoid chunking.
    ``tunnel`` is set on a ``101`` response: the connection then becomes a byte pipe.
    ``file`` is a byte range of an open file (static files): sent with ``sendfile`` where
    the transport allows, the connection closes it when done.
    Responses built once and reused (``respond`` rules, cached static files) are marked
    ``shared``: everyone must treat a Response as read-only, and later phases may remember
    what they made of a shared one.
    ``trailers`` are fields sent after the body where the protocol can (HTTP/2): a
    ``stream`` may set them any time before it finishes (gRPC's ``grpc-status``, a digest).
    """

    __slots__ = (
        "body",
        "content_length",
        "file",
        "headers",
        "identity",
        "shared",
        "status",
        "stream",
        "trailers",
        "tunnel",
        "wire_cache",
    )

    def __init__(
        self,
        status: int,
        headers: Headers | None = None,
        body: bytes = b"",
        stream: AsyncIterator[bytes] | None = None,
        content_length: int | None = None,
        tunnel: Tunnel | None = None,
        file: FileBody | None = None,
    ) -> None:
        self.status = status
        self.tunnel = tunnel
        self.file = file
        self.shared = False
        self.trailers: Headers | None = None
        self.wire_cache: dict[object, bytes] | None = None
        """For shared responses: serialised parts a protocol writer may reuse."""
        self.identity: Hashable | None = None
        """A name for the body's exact bytes, when the handler has one (a cache entry):
        later phases may key what they derive from the body by it (compression)."""
        self.headers: Headers = headers if headers is not None else []
        self.body = body
        self.stream = stream
        if file is not None:
            self.content_length: int | None = file.count
        elif stream is not None:
            self.content_length = content_length
        else:
            self.content_length = len(body)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class PendingResponse:
    """A response still being made, and the response phases still to apply to it.

    What the pipeline returns for an answer that needs waiting (a proxied request): the
    exchange's task awaits ``pending`` and calls :meth:`finish` itself, so the phases cost
    no coroutine of their own on the hottest waiting path. Awaiting it does the same, for
    callers that just want the final response.
    """

    __slots__ = ("pending", "phases", "request")

    def __init__(
        self,
        request: Request,
        pending: Awaitable[Response],
        phases: Sequence[Callable[[Request, Response], Response]],
    ) -> None:
        self.request = request
        self.pending = pending
        self.phases = phases

    def finish(self, response: Response) -> Response:
        """``response`` after the response phases."""
        request = self.request
        for phase in self.phases:
            response = phase(request, response)
        return response

    def __await__(self) -> Generator[object, None, Response]:
        return self._run().__await__()

    async def _run(self) -> Response:
        return self.finish(await self.pending)
