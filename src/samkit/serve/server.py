"""Running the app with uvicorn: in the foreground (the CLI) or on a background thread."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve `app` until interrupted."""
    if host not in LOOPBACK:
        names = ", ".join(getattr(app.state, "allowed_hosts", ()))
        print(
            f"warning: serving on {host}: anyone who can reach this port can read and annotate "
            f"the folder's images (there is no login). Browsers must name the server as one of "
            f"{names} (add others with --allow-host)",
            file=sys.stderr,
        )
    uvicorn.run(app, host=host, port=port, log_level="warning")


@contextmanager
def background(app: FastAPI, *, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on a free port of `host` from a thread; yields its base URL.

    The socket is bound here, before the thread starts, so the port cannot be taken in
    between. Used by the tests and the benchmark.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
