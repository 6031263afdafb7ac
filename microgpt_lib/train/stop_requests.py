"""Ctrl-C as a request: training loops stop after the step in progress, never inside it.

A KeyboardInterrupt raised wherever the signal happens to land can be lost (Python ignores an
exception raised inside a finaliser or a callback, and prints "Exception ignored") or cut a step
in half. `stop_requests` turns SIGINT and SIGTERM into a flag that the loop reads between steps.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_requests() -> Iterator[Any]:
    """A flag set by Ctrl-C (SIGINT) or SIGTERM while the block runs; a second Ctrl-C raises
    KeyboardInterrupt at once. Outside the main thread signals cannot be caught: no flag is set."""
    class Flag:
        requested = False

    flag = Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
