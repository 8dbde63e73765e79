"""Running the app under waitress, the production WSGI server (the CLI's ``serve`` and the browser tests)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from waitress import create_server as _waitress_server

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _AtMostEvery(logging.Filter):
    """Lets a record through at most once per ``seconds`` (waitress warns on every queued request)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._last = float("-inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.created - self._last < self.seconds:
            self._dropped += 1
            return False
        if self._dropped:
            record.msg = f"{record.msg} ({self._dropped} similar warnings suppressed)"
        self._last, self._dropped = record.created, 0
        return True


_queue_log = logging.getLogger("waitress.queue")
if not any(isinstance(f, _AtMostEvery) for f in _queue_log.filters):
    _queue_log.addFilter(_AtMostEvery(60.0))


def create_server(
    app: Flask, host: str, port: int, threads: int = 4, *, connection_limit: int = 2000, channel_timeout: int = 30
) -> Any:
    """A bound, not yet running waitress server (call ``.run()``; ``.close()`` to stop).

    ``port=0`` picks a free port; read it back from ``server.effective_port``. Idle and slow connections
    cannot stop it answering: it accepts up to ``connection_limit`` of them (``poll``, not ``select`` and its
    1024 descriptors; the process's open-file limit is raised to fit) and closes one that stayed silent for
    ``channel_timeout`` seconds (checked every few seconds).
    """
    if host not in LOOPBACK:
        log.warning("listening on %s: the admin app is reachable from other machines", host)
    _allow_open_files(connection_limit + 256)
    return _waitress_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="ensemble-cache",
        clear_untrusted_proxy_headers=True,
        connection_limit=connection_limit,
        channel_timeout=channel_timeout,
        cleanup_interval=max(1, min(5, channel_timeout)),
        asyncore_use_poll=True,
    )


def _allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit of open files towards ``wanted`` (never above the hard limit)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(app: Flask, host: str, port: int, threads: int = 4, **limits: int) -> None:
    """Serve ``app`` until interrupted (``limits``: see :func:`create_server`)."""
    server = create_server(app, host, port, threads, **limits)
    try:
        server.run()
    finally:
        server.close()
