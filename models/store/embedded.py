"""The embedded MongoDB-compatible server (SecantusDB), run as a separate process.

The server is GPL-2.0 software; we only start its ``secantusd-py`` command and
talk to it over the wire, never import it. Its data, pid file and log live
under ``VAR_DIR`` (default ``var/``), which git ignores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from models.errors import EmbeddedServerError
from models.processes import pid_alive
from models.settings import Settings

log = logging.getLogger(__name__)

BINARY = "secantusd-py"


def find_binary() -> str:
    """Path of ``secantusd-py``: next to the running interpreter first (the virtualenv), then PATH."""
    beside = Path(sys.executable).parent / BINARY
    if beside.exists():
        return str(beside)
    found = shutil.which(BINARY)
    if not found:
        raise EmbeddedServerError(
            f"the embedded database command {BINARY!r} was not found; install the requirements "
            "(pip install -r requirements.txt) or set MONGO_URI to use another MongoDB"
        )
    return found


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ping(host: str, port: int, timeout_ms: int = 500) -> bool:
    client = MongoClient(
        host=host,
        port=port,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        directConnection=True,
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


@dataclass
class EmbeddedServer:
    """One embedded server: where it keeps its data and how to reach it."""

    storage_path: Path
    host: str = "127.0.0.1"
    port: int = 27018
    run_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedServer:
        return cls(
            storage_path=settings.mongo_dir,
            host=settings.embedded_host,
            port=settings.embedded_port,
            run_dir=settings.var_dir,
        )

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return (self.run_dir or self.storage_path.parent) / f"mongo-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return (self.run_dir or self.storage_path.parent) / f"mongo-{self.port}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> dict:
        pid = self.pid()
        return {
            "running": pid is not None and ping(self.host, self.port),
            "pid": pid,
            "uri": self.uri,
            "storage_path": str(self.storage_path),
            "log_file": str(self.log_file),
        }

    def start(self, timeout: float = 20.0) -> dict:
        """Start the server unless this one already runs; wait until it answers ``ping``."""
        pid = self.pid()
        if pid is not None and ping(self.host, self.port):
            return {**self.status(), "already_running": True}
        if port_in_use(self.host, self.port):
            raise EmbeddedServerError(
                f"port {self.port} on {self.host} is already taken by another process; "
                "set EMBEDDED_MONGO_PORT to a free port"
            )
        binary = find_binary()
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage_path),
            "--sync-on-commit",
            "--log-level",
            "WARNING",
        ]
        with open(self.log_file, "ab") as logf:
            proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise EmbeddedServerError(
                    f"the embedded database exited at start (code {proc.returncode}); "
                    f"last log lines: {self._log_tail()}"
                )
            if ping(self.host, self.port, timeout_ms=200):
                log.info("embedded database ready on %s (pid %s)", self.uri, proc.pid)
                return {**self.status(), "already_running": False}
            time.sleep(0.1)
        self._kill(proc.pid)
        raise EmbeddedServerError(f"the embedded database did not answer ping within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server; return False when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._kill(pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill_hard(self) -> None:
        """SIGKILL, as a crash would (used by fault tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)

    def _kill(self, pid: int, timeout: float = 10.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not _wait_gone(pid, timeout):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            _wait_gone(pid, 5.0)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False
