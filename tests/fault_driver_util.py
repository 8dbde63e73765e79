"""Starting ``tests/fault_driver.py`` as a real subprocess and reading its markers (bounded waits)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from models.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def driver_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "MONGO_DB", "ARTIFACT_DIR", "VAR_DIR")}
    env.update(
        MONGO_URI=settings.effective_mongo_uri,
        MONGO_DB=settings.mongo_db,
        ARTIFACT_DIR=str(settings.artifact_dir),
        VAR_DIR=str(settings.var_dir),
        MONGO_TIMEOUT_MS=str(settings.server_selection_timeout_ms),
        SERVING_CACHE_MS=str(settings.serving_cache_ms),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


class Driver:
    """One driver process; ``expect(word)`` waits (bounded) for a stdout line starting with ``word``."""

    def __init__(self, settings: Settings, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fault_driver", *args],
            cwd=ROOT,
            env=driver_env(settings, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")  # EOF

    def expect(self, word: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise AssertionError(
                    f"driver did not print {word!r} within {timeout:.0f}s; saw {self.seen}; "
                    f"stderr: {self.stderr_tail()}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line == "" and self.proc.poll() is not None:
                raise AssertionError(
                    f"driver exited ({self.proc.returncode}) before {word!r}; saw {self.seen}; "
                    f"stderr: {self.stderr_tail()}"
                )
            self.seen.append(line)
            if line.startswith(word):
                return line

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap the process."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()[-2000:]

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
