"""Watching a server database for other processes' commits from a background thread.

On SQLite the manager asks `PRAGMA data_version` on the request path (a local read of ~4 µs); on
PostgreSQL or MySQL the same question is a network round trip, which must never run on the server's
event loop nor stall a request when the database is slow or down. So a daemon thread asks it every
`interval` seconds and lets the manager drop what it cached; the staleness bound for values written by
other processes is then `interval` (plus the query's time).

Never: raises out of the thread (an unreachable database is retried at the next tick; the requests
themselves report it), or logs more than one line per outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from llm_config.errors import StorageError

__all__ = ["ChangePoller"]

log = logging.getLogger("llm_config")


class ChangePoller:
    """Calls `look()` every `interval` seconds in a daemon thread until `stop()`."""

    def __init__(self, look: Callable[[], None], interval: float) -> None:
        self._look = look
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-config-change-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stopped.wait(self._interval):
            try:
                self._look()
            except Exception as exc:  # the thread must live on: the next tick tries again
                if not failing:
                    why = exc.message if isinstance(exc, StorageError) else type(exc).__name__
                    log.warning("change poller: cannot reach the store (%s); cached entries expire by their TTL "
                                "until it answers again", why)
                failing = True
            else:
                failing = False

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
