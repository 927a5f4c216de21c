"""The demo's ASGI entry point: ``uvicorn shop.asgi:application`` in the demo project.

The starter's ``demosite.asgi`` answers HTTP only (Django does not speak WebSocket), so a
small pure-ASGI router sits in front of it:

* ``websocket`` scopes for ``/ws/echo`` go to an echo app (text frames come back as text,
  binary as binary); other websocket paths are refused (Uvicorn answers 403);
* ``lifespan`` is acknowledged here (Django does not speak it);
* everything else is Django.

No Channels: the echo is a dozen lines of raw ASGI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from demosite.asgi import application as django_application

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ECHO_PATHS = frozenset({"/ws/echo", "/ws/echo/"})


async def websocket_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, send every message back unchanged, stop when the client goes away."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            elif message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        elif kind == "websocket.disconnect":
            return


async def websocket_not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse the handshake (closing before accepting makes the server answer 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        if scope["path"] in ECHO_PATHS:
            await websocket_echo(scope, receive, send)
        else:
            await websocket_not_found(scope, receive, send)
    elif kind == "lifespan":
        await lifespan(scope, receive, send)
    else:
        await django_application(scope, receive, send)
