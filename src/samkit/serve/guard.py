"""Who may talk to the annotator: only its own page, by a name this server answers to.

Three checks, before any route runs (the annotator has no login, so these are what keep a web
page open in the same browser from reading or writing the folder):
- Host allowlist, against DNS rebinding (a name of the attacker's that resolves to 127.0.0.1
  makes their page same-origin with the server): the Host header's name must be a loopback
  name or one the server was started with; otherwise 421. The port is not checked, so an SSH
  tunnel to another local port still works.
- Origin: when a request carries one, it must be the server's own (scheme http or https, and
  the Host header's name and port); otherwise 403.
- Every state-changing request (POST, PUT, PATCH, DELETE) must carry the header
  `X-Samkit: 1`; otherwise 403. A page on another origin cannot send it: a custom header
  needs a CORS preflight, which this server never grants, and a "no-cors" request (a form,
  `fetch(..., {mode: "no-cors"})`) cannot carry one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "X-Samkit"  # the header state-changing requests carry (value "1")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def host_name(value: str) -> str:
    """The name part of a Host header or bind address, lowercased: "LocalHost:8000" ->
    "localhost", "[::1]:8000" and "::1" -> "[::1]"."""
    value = value.strip().lower()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.find("]")]
    elif value.count(":") == 1:
        value = value.split(":")[0]  # name:port
    try:
        return f"[{ipaddress.IPv6Address(value)}]"  # bracketed, as in a URL
    except ValueError:
        return value.rstrip(".")


def allowed_names(hosts: Iterable[str] = ()) -> tuple[str, ...]:
    """The loopback names plus `hosts` (bind addresses or names, as `host_name` gives them)."""
    names = dict.fromkeys(LOOPBACK_NAMES)
    names.update((host_name(host), None) for host in hosts if host.strip())
    return tuple(names)


class RequestGuard:
    """ASGI middleware: the Host allowlist, the Origin check and the X-Samkit header."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = allowed_names(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.check(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, detail = problem
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """(status, what was wrong and what to do), or None for a request that may pass."""
        headers: dict[bytes, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.lower(), []).append(value.decode("latin-1"))
        hosts = headers.get(b"host", [])
        names = ", ".join(self.allowed)
        if len(hosts) != 1:
            return 400, f"the request needs one Host header (one of {names}); got {len(hosts)}"
        host = hosts[0]
        if host_name(host) not in self.allowed:
            return 421, (
                f"this server does not answer to the host name {host_name(host)!r}, only to "
                f"{names}: open the annotator by one of those (a name outside this list may be "
                "a DNS-rebinding attack), or start samkit serve with --allow-host "
                f"{host_name(host)} to accept it"
            )
        for origin in headers.get(b"origin", []):
            if not _same_origin(origin, host):
                return 403, (
                    f"cross-origin request from {origin} refused: the annotator answers its "
                    f"own page only (http://{host})"
                )
        if scope.get("method", "GET") in WRITE_METHODS and not headers.get(HEADER.lower().encode()):
            return 403, (
                f"{scope['method']} requests need the header {HEADER}: 1 (the annotator page "
                "sends it; it keeps pages of other web sites from changing the folder)"
            )
        return None


def _same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
