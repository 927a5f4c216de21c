"""Closing what a response holds: its body stream, its open file, its tunnel.

Every layer needs this (connections that abandon a response, phases that replace one,
the compression stream that wraps one), so it lives beside the message types.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from bext.http.message import Response

log = logging.getLogger("bext")


async def aclose_stream(stream: AsyncIterator[bytes]) -> None:
    """Close an async iterator that may or may not have ``aclose``."""
    close: Callable[[], Awaitable[object]] | None = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def release(response: Response) -> None:
    """Free what a response holds that nobody will send: a tunnel, a stream, a file.

    Safe to call on a response that was sent, or released, already: each part's close is
    idempotent. A stream that fails to close is logged, never raised: the caller is
    cleaning up after something else.
    """
    if response.tunnel is not None:
        response.tunnel.close()
    if response.file is not None:
        response.file.close()
    if response.stream is not None:
        try:
            await aclose_stream(response.stream)
        except Exception:
            log.exception("closing a response stream failed")
