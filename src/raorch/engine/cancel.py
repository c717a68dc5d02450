"""A host's cancel flag: set when its deadline passes or the run is aborted.

Like ``threading.Event`` (``set``, ``is_set``), plus ``when_set``: the host's session registers
its ``abort`` there, so that setting the flag also ends the session's I/O at once (its sockets
shut down) instead of leaving the host's thread blocked until pypsrp's read timeouts fire.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


class Cancel:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        """Set the flag and run every registered callback once, in this thread; a callback
        that raises does not keep the others from running."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):
                callback()

    def when_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when the flag is set (at once if it is already). Returns the
        function that unregisters it (for a session that closed normally)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                registered = True
            else:
                registered = False
        if not registered:
            with contextlib.suppress(Exception):
                callback()

        def unregister() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unregister
