"""Facts about local processes: is a pid alive, and who "this process" is as the owner of a job or a training.

Used by the embedded server manager, the job store and training recovery."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


_HOST = socket.gethostname()
_instance = uuid.uuid4().hex


def _new_instance_after_fork() -> None:
    global _instance
    _instance = uuid.uuid4().hex


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_instance_after_fork)


def current_owner() -> dict[str, Any]:
    """This process as the owner of a job or a training: host, pid and a per-process token (pids get reused)."""
    return {"host": _HOST, "pid": os.getpid(), "instance": _instance}


def owned_by_me() -> dict[str, Any]:
    """A filter part matching jobs owned by this very process."""
    return {"owner.instance": _instance}


def owner_is_dead(owner: dict[str, Any]) -> bool:
    """True when ``owner`` (a :func:`current_owner` value) is a process on this host that no longer runs.

    A reused pid is caught by the per-process ``instance`` token only for our own pid; an owner on
    another host cannot be judged from here (False).
    """
    host, pid = owner.get("host"), owner.get("pid")
    if host != _HOST or not isinstance(pid, int) or owner.get("instance") == _instance:
        return False
    return pid == os.getpid() or not pid_alive(pid)
