"""Stopping a long command cleanly on SIGINT (Ctrl-C) and SIGTERM (`kill`, a job scheduler).

Two ways to stop, one set of signal handlers:

- `raise_on_signal()`: a signal raises `Interrupted` wherever the program is, as Ctrl-C
  raises KeyboardInterrupt, but for SIGTERM too. Outputs are written through
  `_atomic.atomic_path` (a temporary name, then a rename), so the output in flight is
  discarded whole; the loops over images catch `Interrupted`, count what is done and raise it
  on with that count (`Interrupted.done`). The commands turn it into one line and exit
  128 + the signal number (130 for SIGINT, 143 for SIGTERM), with no traceback.
- `stop_on_signal()`: within it a first signal only sets a flag, which a loop checks at a safe
  point (the trainer: between steps, then it saves a checkpoint); a second signal raises
  `Interrupted` at once.

Signals reach the main thread only: in another thread both leave the handlers as they are.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A command was stopped by `signum`. `done` says what it had finished ("6 images done,
    2 left"). A BaseException, so that `except Exception` (one bad image must not stop a run)
    lets it through."""

    def __init__(self, signum: int, done: str = "") -> None:
        super().__init__(signum, done)
        self.signum = signum
        self.done = done

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"interrupted ({name})" + (f": {self.done}" if self.done else "")


@contextlib.contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def raise_on_signal() -> contextlib.AbstractContextManager[None]:
    """Within the block, SIGINT and SIGTERM raise `Interrupted`; the previous handlers come
    back afterwards."""
    return _handling(_raise)


def images(n: int) -> str:
    """'1 image', '6 images': for the counts `Interrupted.done` gives."""
    return f"{n} image" if n == 1 else f"{n} images"


class Stop:
    """The flag `stop_on_signal` sets: true once a signal came, `signum` being which."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signal(after: str = "the current step") -> Iterator[Stop]:
    """Within the block, a first SIGINT or SIGTERM sets the yielded flag (and says on stderr
    that the program stops after `after`) so the loop can finish its unit of work and stop;
    a second one raises `Interrupted`. The previous handlers come back afterwards."""
    stop = Stop()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop:
            raise Interrupted(signum)
        stop.signum = signum
        note = f"\nstopping after {after}; interrupt again to stop at once\n"
        os.write(2, note.encode())  # not print(): the handler may interrupt a print

    with _handling(handler):
        yield stop
