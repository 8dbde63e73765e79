"""A claim in MongoDB, so that work two callers both need is done once, across threads and processes.

A claim is one document in the locks collection whose ``_id`` is the key:
inserting it succeeds for exactly one caller (the unique ``_id`` decides
races); the others get ``DuplicateKeyError`` and poll until the document is
gone. The holder refreshes ``expires_at`` from a heartbeat thread while it
works, so a long training keeps its claim, and a dead holder's claim
expires after ``lock_ttl_seconds``. MongoDB's TTL monitor removes expired
documents only about once a minute, so waiters also check ``expires_at``
themselves and take over an expired claim (atomically: delete-if-expired,
then insert).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from models.errors import ServiceError
from models.timeutil import now

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 0.1


class LockTimeoutError(ServiceError):
    """Waited longer than allowed for another caller's claim."""

    code = "lock_timeout"
    http_status = 503


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{secrets.token_hex(4)}"


def _check(ttl_seconds: float, poll_seconds: float, timeout: float | None) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
    if not poll_seconds > 0:
        raise ValueError(f"poll_seconds must be > 0, got {poll_seconds!r}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")


@dataclass
class LockState:
    """What happened while taking a claim: whether we waited, how long, whether we took over an expired one."""

    key: str
    owner: str
    waited: bool = False
    waited_seconds: float = 0.0
    took_over_expired: bool = False


class _Claim:
    """What the sync and async locks share: the claim document, the take-over rule and the timeout."""

    def __init__(
        self, collection: Any, key: str, ttl_seconds: float, poll_seconds: float, timeout: float | None
    ) -> None:
        _check(ttl_seconds, poll_seconds, timeout)
        self.col = collection
        self.key = key
        self.ttl = float(ttl_seconds)
        self.poll = float(poll_seconds)
        self.timeout = timeout
        self.state = LockState(key, _owner())

    def _doc(self) -> dict[str, Any]:
        stamp = now()
        return {
            "_id": self.key,
            "owner": self.state.owner,
            "acquired_at": stamp,
            "expires_at": stamp + timedelta(seconds=self.ttl),
        }

    def _expired(self) -> dict[str, Any]:
        """Matches the claim if its holder stopped refreshing it (a dead process)."""
        return {"_id": self.key, "expires_at": {"$lte": now()}}

    def _took_over(self) -> None:
        log.warning("claim %s had expired (holder gone?); taking it over", self.key)
        self.state.took_over_expired = True

    def _waited(self, t0: float) -> None:
        """Note a failed attempt; LockTimeoutError once ``timeout`` has passed."""
        self.state.waited = True
        if self.timeout is not None and time.monotonic() - t0 > self.timeout:
            raise LockTimeoutError(
                f"waited {self.timeout:.0f} s for {self.key!r}, which another caller still holds; try again later"
            )

    def _mine(self) -> dict[str, Any]:
        return {"_id": self.key, "owner": self.state.owner}

    def _extension(self) -> dict[str, Any]:
        return {"$set": {"expires_at": now() + timedelta(seconds=self.ttl)}}


class MongoLock(_Claim):
    """``with MongoLock(database.locks, key, ttl_seconds=...) as state:`` holds the claim for the block."""

    def __init__(
        self,
        collection: Collection,
        key: str,
        *,
        ttl_seconds: float = 600,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        timeout: float | None = None,
        heartbeat: bool = True,
    ) -> None:
        super().__init__(collection, key, ttl_seconds, poll_seconds, timeout)
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> LockState:
        t0 = time.monotonic()
        while True:
            try:
                self.col.insert_one(self._doc())
                break
            except DuplicateKeyError:
                pass
            if self.col.delete_one(self._expired()).deleted_count:
                self._took_over()
                continue
            self._waited(t0)
            time.sleep(self.poll)
        self.state.waited_seconds = time.monotonic() - t0
        if self.heartbeat:
            self._beat = threading.Thread(target=self._refresh, name=f"lock-heartbeat-{self.key}", daemon=True)
            self._beat.start()
        return self.state

    def _refresh(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.col.update_one(self._mine(), self._extension())
            except Exception:  # the next beat tries again; losing one refresh is harmless
                log.exception("could not refresh claim %s", self.key)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        self.col.delete_one(self._mine())

    def __enter__(self) -> LockState:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class AsyncMongoLock(_Claim):
    """The same claim for an event loop, on a pymongo ``AsyncCollection`` (``async with``)."""

    def __init__(
        self,
        collection: Any,
        key: str,
        *,
        ttl_seconds: float = 600,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        timeout: float | None = None,
    ) -> None:
        super().__init__(collection, key, ttl_seconds, poll_seconds, timeout)
        self._beat: asyncio.Task | None = None

    async def acquire(self) -> LockState:
        t0 = time.monotonic()
        while True:
            try:
                await self.col.insert_one(self._doc())
                break
            except DuplicateKeyError:
                pass
            if (await self.col.delete_one(self._expired())).deleted_count:
                self._took_over()
                continue
            self._waited(t0)
            await asyncio.sleep(self.poll)
        self.state.waited_seconds = time.monotonic() - t0
        self._beat = asyncio.create_task(self._refresh())
        return self.state

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.col.update_one(self._mine(), self._extension())
            except Exception:
                log.exception("could not refresh claim %s", self.key)

    async def release(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        await self.col.delete_one(self._mine())

    async def __aenter__(self) -> LockState:
        return await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()
