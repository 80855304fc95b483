"""Keeping a long job's leases (M4): while it fetches, transcodes and uploads, a thread
extends the SQS message's visibility and the job's database lease every third of the
visibility timeout, and records the transcode's progress at most every few seconds.

A lease that comes back refused (another worker took the job over after this one stalled)
is remembered: the running step sees `lost` through its stop check and ends, and nothing
this attempt wrote can be published because every later write is guarded by its token.

The thread shares the worker's database through `SerialDatabase`, which lets one
transaction run at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

PROGRESS_INTERVAL_SECONDS = 3.0
"""Shortest time between two progress writes of one job."""


class SerialDatabase:
    """A Database whose transactions run one at a time, whatever thread asks (its single
    connection must never be shared by two transactions)."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], T]) -> T:
        with self._lock:
            return self._database.run(work)

    def close(self) -> None:
        with self._lock:
            self._database.close()


class LeaseKeeper:
    """A background thread for one job attempt; use it as a context manager around the
    steps that do not use the database themselves."""

    def __init__(
        self,
        *,
        extend: Callable[[], bool],
        record_progress: Callable[[float], None],
        lease_interval: float,
        progress_interval: float = PROGRESS_INTERVAL_SECONDS,
        log_fields: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._extend = extend
        self._record_progress = record_progress
        self._lease_interval = max(0.1, lease_interval)
        self._progress_interval = max(0.1, progress_interval)
        self._fields = log_fields or {}
        self._clock = clock
        self._halt = threading.Event()
        self._lost = threading.Event()
        self._fraction: float | None = None
        self._written: float | None = None
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self.extensions = 0

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def on_progress(self, fraction: float) -> None:
        """Called by the transcode (from its own thread); only remembered here."""
        self._fraction = min(1.0, max(0.0, float(fraction)))

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()

    def _run(self) -> None:
        now = self._clock()
        next_extension = now + self._lease_interval
        next_progress = now  # the first fraction is written as soon as it is known
        tick = min(self._lease_interval, self._progress_interval, 1.0)
        while not self._halt.wait(tick):
            now = self._clock()
            if now >= next_extension:
                next_extension = now + self._lease_interval
                self._extend_once()
            if now >= next_progress and self._fraction != self._written:
                next_progress = now + self._progress_interval
                self._progress_once()

    def _extend_once(self) -> None:
        try:
            held = self._extend()
        except Exception as error:
            # The lease may still be extended on the next tick, before it lapses.
            log.warning("could not extend the lease", extra={**self._fields, "error": str(error)})
            return
        if held:
            self.extensions += 1
            return
        log.warning("lease lost: another worker took the job over", extra=self._fields)
        self._lost.set()

    def _progress_once(self) -> None:
        fraction = self._fraction
        if fraction is None:
            return
        try:
            self._record_progress(fraction)
            self._written = fraction
        except Exception as error:
            log.warning("could not record progress", extra={**self._fields, "error": str(error)})
