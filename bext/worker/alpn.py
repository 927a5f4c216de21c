"""Pick HTTP/2 or HTTP/1.1 for a TLS connection by what ALPN agreed on.

asyncio creates the protocol before the TLS handshake and calls ``connection_made`` only
once it is done, when the negotiated protocol is known. So the listener's protocol is a
tiny dispatcher that, in ``connection_made``, builds the real connection and hands the
transport over with ``set_protocol``; it never sees a byte itself. On a plain transport (no
ALPN) it picks HTTP/1.1, which still recognises h2c prior knowledge by its preface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bext.worker.context import WorkerContext
from bext.worker.h1_connection import H1Connection
from bext.worker.h2_connection import H2Connection

ALPN_PROTOCOLS = ["h2", "http/1.1"]
"""What a TLS context should offer (``SSLContext.set_alpn_protocols``), best first."""


class AlpnDispatcher(asyncio.Protocol):
    __slots__ = ("_ctx",)

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        # "http/1.1", or a client that offered no ALPN at all: HTTP/1.1.
        protocol: asyncio.Protocol = (
            H2Connection(self._ctx) if chosen == "h2" else H1Connection(self._ctx)
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def alpn_protocol_factory(ctx: WorkerContext) -> Callable[[], asyncio.Protocol]:
    """The protocol factory for ``loop.create_server(..., ssl=context)``."""

    def factory() -> asyncio.Protocol:
        return AlpnDispatcher(ctx)

    return factory
