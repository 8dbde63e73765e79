"""Progress as plain lines on stderr, for when nobody watches a terminal (CI, ``2>file``, ``--json``).

Each new step is written at once; while a step runs, its state is written again every
``interval`` seconds (``PROGRESS_INTERVAL_SECONDS``) with the time it has run, so a long fit never
goes silent. A line: ``[ 42.0%] home_win_rf: fold 3/5 (1 min 05 s)``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

Progress = Callable[[float, str], None]


def format_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class _Task:
    started: float
    fraction: float = 0.0
    message: str = ""
    written_at: float = 0.0
    done: bool = False


class ProgressLines:
    """``with ProgressLines(5) as lines: work(progress=lines.reporter("name"))``."""

    def __init__(self, interval: float = 5.0, stream: TextIO | None = None) -> None:
        self.interval = max(float(interval), 0.2)
        self.stream = stream
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressLines:
        self._thread = threading.Thread(target=self._beat, name="progress-lines", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def reporter(self, name: str | None = None) -> Progress:
        """A progress callback for one piece of work (``name`` prefixes its lines)."""
        key = name or ""

        def report(fraction: float, message: str) -> None:
            with self._lock:
                task = self._tasks.setdefault(key, _Task(started=time.monotonic()))
                changed = message != task.message
                task.fraction, task.message = fraction, message
                task.done = fraction >= 1.0
                if changed:
                    self._write(key, task)

        return report

    def finish(self, name: str | None, message: str) -> None:
        """The last line of a piece of work (``failed``, ``done in 3 s``); no more heartbeats for it."""
        with self._lock:
            task = self._tasks.setdefault(name or "", _Task(started=time.monotonic()))
            task.message, task.done = message, True
            self._write(name or "", task)

    def _write(self, key: str, task: _Task) -> None:
        now = time.monotonic()
        task.written_at = now
        prefix = f"{key}: " if key else ""
        line = f"[{task.fraction * 100:5.1f}%] {prefix}{task.message} ({format_elapsed(now - task.started)})"
        stream = self.stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away; the work goes on
            pass

    def _beat(self) -> None:
        while not self._stop.wait(min(self.interval / 4, 1.0)):
            now = time.monotonic()
            with self._lock:
                for key, task in self._tasks.items():
                    if not task.done and now - task.written_at >= self.interval:
                        self._write(key, task)
