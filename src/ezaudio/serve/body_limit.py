"""ASGI middleware: request bodies above a size limit get 413, before anything parses them.

A ``Content-Length`` over the limit is refused at once; a body sent without one (chunked)
is counted as it arrives and refused when it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Limit request bodies: ``limit_for(path)`` gives (the limit in bytes, the size to name
    in the message), or None for no limit."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, int] | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.limit_for(scope.get("path", ""))
        if rule is None:
            await self.app(scope, receive, send)
            return
        limit, shown = rule
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, shown)
            return
        received = 0
        exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers to a body cut short (FastAPI: 400), the client gets 413.
            if not exceeded:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if exceeded:
            await _refuse(send, shown)


def describe_size(size: int) -> str:
    """1048576 -> '1 MiB', 65536 -> '64 KiB'."""
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 2**10:g} KiB"


async def _refuse(send: Send, size: int) -> None:
    body = json.dumps({"detail": f"the request is larger than {describe_size(size)}"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
