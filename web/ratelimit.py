"""A small in-process sliding-window counter with exponential back-off, used to slow down guessing."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most ``limit`` recorded events per ``key`` within ``window`` seconds.

    In-process only: enough for one server process guarding its login form.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def blocked(self, key: str) -> bool:
        """True when ``key`` has used up its events in the current window."""
        with self._lock:
            events = self._prune(key, self._clock())
            if not events:
                self._events.pop(key, None)
            return len(events) >= self.limit

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again (0 when it may now)."""
        with self._lock:
            now = self._clock()
            events = self._prune(key, now)
            if len(events) < self.limit:
                return 0
            return max(1, int(events[0] + self.window - now + 0.999))

    def backoff(self, key: str) -> int:
        """Seconds ``key`` must wait before its next attempt: none below ``limit`` failures in the window,
        then 2 s after the last failure, doubling with each further one (at most ``window``)."""
        with self._lock:
            now = self._clock()
            events = self._prune(key, now)
            if len(events) < self.limit:
                return 0
            delay = min(self.window, 2.0 ** (len(events) - self.limit + 1))
            return max(0, int(events[-1] + delay - now + 0.999))

    def record(self, key: str) -> None:
        """Count one event (e.g. a failed login) for ``key``."""
        with self._lock:
            self._prune(key, self._clock()).append(self._clock())

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)
