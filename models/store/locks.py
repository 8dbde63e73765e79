"""Errors of waiting on work another caller holds.

One training per config is held by its job's claim (``active_key`` in the jobs collection, see
:mod:`models.store.jobs` and :mod:`models.training.service`); a caller that joins it may bound its wait
and gets :class:`LockTimeoutError` when that time has passed.
"""

from __future__ import annotations

from models.errors import ServiceError


class LockTimeoutError(ServiceError):
    """Waited longer than allowed for work another caller holds."""

    code = "lock_timeout"
    http_status = 503
