"""Recorded spans as an OTLP ``ExportTraceServiceRequest`` (protobuf), for the exporter.

The message classes come from ``opentelemetry-proto`` (the ``bext[otel]`` extra), imported
by name on first use, so that bext imports, type-checks and runs without the extra as long
as ``[metrics] otlp_endpoint`` is unset; the config reader refuses the key when
:func:`available` is False. It imports the module when it succeeds, in the master before
workers fork, so workers share its pages.

What a span holds follows OpenTelemetry's HTTP server semantic conventions: kind SERVER,
named ``METHOD ROUTE`` (the rule's pattern), with ``http.request.method``, ``url.path``,
``url.scheme``, ``http.response.status_code``, ``http.route``, ``server.address`` (the
request's host, without a port), ``network.protocol.version``, and bext's own
``bext.request_id``, ``bext.upstream`` and ``bext.upstream.server``. A 5xx answer sets the
span's status to ERROR; otherwise it is left unset, as the conventions ask of servers.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from bext import __version__

if TYPE_CHECKING:
    from bext.observe.otlp import SpanRecord

__all__ = ["LIBRARY", "Encoder", "available"]

LIBRARY = "opentelemetry-proto"
"""The distribution the extra installs (it brings ``protobuf``)."""
_SERVICE = "opentelemetry.proto.collector.trace.v1.trace_service_pb2"
_TRACE = "opentelemetry.proto.trace.v1.trace_pb2"
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY")
)
"""``http.request.method`` values the conventions know; any other is sent as ``_OTHER``."""
_VERSIONS = {"2.0": "2", "3.0": "3"}
"""``Request.http_version`` as the conventions write it (HTTP/2 is "2.0" there)."""


def available() -> bool:
    """True if the extra's protobuf classes can be imported (importing them)."""
    try:
        import_module(_SERVICE)
    except ImportError:
        return False
    return True


class Encoder:
    """Builds one request's protobuf bytes from recorded spans, in pieces.

    :meth:`start` begins a request with the resource (``service.name``, ``service.version``)
    and the instrumentation scope; :meth:`add` appends spans (the exporter adds a few
    hundred at a time and lets its loop run in between); :meth:`finish` serialises.
    Times are the event loop's clock plus ``offset_ns``: Unix time in nanoseconds.
    """

    def __init__(self, service_name: str) -> None:
        self._service: Any = import_module(_SERVICE)
        trace: Any = import_module(_TRACE)
        self._server_kind: int = trace.Span.SPAN_KIND_SERVER
        self._error: int = trace.Status.STATUS_CODE_ERROR
        self.service_name = service_name
        self._request: Any = None
        self._spans: Any = None

    def start(self) -> None:
        request = self._request = self._service.ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        for key, value in (("service.name", self.service_name), ("service.version", __version__)):
            attribute = resource_spans.resource.attributes.add()
            attribute.key = key
            attribute.value.string_value = value
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "bext"
        scope_spans.scope.version = __version__
        self._spans = scope_spans.spans

    def add(self, records: Sequence[SpanRecord], offset_ns: int) -> None:
        """Append ``records`` to the request begun by :meth:`start`."""
        spans = self._spans
        assert spans is not None, "start() first"
        kind = self._server_kind
        for record in records:
            (trace_id, span_id, parent_id, method, path, scheme, host, status, route,
             upstream, server, request_id, version, start, end) = record  # fmt: skip
            span = spans.add()
            span.trace_id = bytes.fromhex(trace_id)
            span.span_id = bytes.fromhex(span_id)
            if parent_id is not None:
                span.parent_span_id = bytes.fromhex(parent_id)
            known = method if method in KNOWN_METHODS else "_OTHER"
            span.name = known if route is None else f"{known} {route}"
            span.kind = kind
            span.start_time_unix_nano = offset_ns + round(start * 1e9)
            span.end_time_unix_nano = offset_ns + round(max(end, start) * 1e9)
            attributes = span.attributes
            _text(attributes, "http.request.method", known)
            if known != method:
                _text(attributes, "http.request.method_original", method)
            _text(attributes, "url.path", path)
            _text(attributes, "url.scheme", scheme)
            status_code = attributes.add()
            status_code.key = "http.response.status_code"
            status_code.value.int_value = status
            if route is not None:
                _text(attributes, "http.route", route)
            if host:
                _text(attributes, "server.address", server_address(host))
            _text(attributes, "network.protocol.version", _VERSIONS.get(version, version))
            if request_id is not None:
                _text(attributes, "bext.request_id", request_id)
            if upstream is not None:
                _text(attributes, "bext.upstream", upstream)
            if server is not None:
                _text(attributes, "bext.upstream.server", server)
            if status >= 500:
                span.status.code = self._error

    def finish(self) -> bytes:
        """The request's bytes; the encoder is ready for another :meth:`start`."""
        request, self._request, self._spans = self._request, None, None
        assert request is not None, "start() first"
        data: bytes = request.SerializeToString()
        return data


def _text(attributes: Any, key: str, value: str) -> None:
    attribute = attributes.add()
    attribute.key = key
    attribute.value.string_value = value


def server_address(host: str) -> str:
    """The Host field without its port: ``example.com:8443`` -> ``example.com``,
    ``[::1]:3000`` -> ``::1``."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host
