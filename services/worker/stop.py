"""The worker's stop request: set by SIGTERM, read by the loop, the probe and publication."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class StopSignal:
    """Set by SIGTERM; fixes the moment by which the worker must have let go of its work."""

    def __init__(self, stop_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout = stop_timeout
        self._clock = clock
        self._event = threading.Event()
        self.deadline: float | None = None

    def request(self) -> None:
        if self.deadline is None:
            self.deadline = self._clock() + self._timeout
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)
