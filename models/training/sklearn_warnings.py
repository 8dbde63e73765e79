"""scikit-learn's warnings during a fit, without advice that does not apply to the config.

A solver that stops early tells the user to scale the data ("scale the data as shown in ...",
"Consider pre-processing your data with StandardScaler or MinMaxScaler"). When the config has a
scaler, the data *is* scaled: the warning is logged without that advice. The setting is per thread
(``warnings.catch_warnings`` is not thread-safe, and trainings run on several threads).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

SCALE_ADVICE = re.compile(r"scale the data|pre-?processing your data with StandardScaler", re.I)
_local = threading.local()
_install_lock = threading.Lock()
_installed = False


def without_scale_advice(message: str) -> str:
    """The warning's text with the sentences that advise scaling removed."""
    sentences = re.split(r"(?<=[.:])\s+", " ".join(message.split()))
    kept = [
        s
        for s in sentences
        if not SCALE_ADVICE.search(s) and not s.startswith("https://") and "preprocessing.html" not in s
    ]
    return " ".join(kept).strip()


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        original = warnings.showwarning

        def show(
            message: Any,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            scaler = getattr(_local, "scaler", None)
            if scaler and SCALE_ADVICE.search(str(message)):
                log.warning(
                    "%s: %s (the data is already scaled by the config's %r scaler)",
                    category.__name__,
                    without_scale_advice(str(message)),
                    scaler,
                )
                return
            original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        _installed = True


@contextmanager
def scaled_data(scaler: str | None) -> Iterator[None]:
    """Within this block (on this thread), drop scikit-learn's scaling advice if ``scaler`` scales."""
    _install()
    previous = getattr(_local, "scaler", None)
    _local.scaler = scaler if scaler and scaler != "none" else None
    try:
        yield
    finally:
        _local.scaler = previous
