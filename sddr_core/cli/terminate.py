"""SIGTERM as an exception, so a terminated command cleans up like an interrupted one."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM arrived: raised where the program stands, so temporary files are removed on the
    way out (a BaseException, like KeyboardInterrupt, so no `except Exception` swallows it)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated`; the previous handler is restored after.
    Off the main thread, where Python cannot install a handler, SIGTERM keeps its own."""
    def terminate(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
