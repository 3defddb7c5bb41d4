"""Request body limit: refuse bodies over `max_bytes` with 413 before they fill memory."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(
        413, f"request body is larger than the server's limit of {max_bytes:,} bytes"
    )


class BodyLimit:
    """ASGI middleware: 413 when Content-Length or the bytes actually received pass the limit.

    A declared length is checked before anything is read; a chunked body is counted as it
    arrives and the handler reading it gets a 413 HTTPException.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _reject(send, self.max_bytes)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, counted, send)


async def _reject(send: Send, max_bytes: int) -> None:
    import json

    body = json.dumps({"detail": _too_large(max_bytes).detail}).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"connection", b"close")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
