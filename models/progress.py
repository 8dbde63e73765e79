"""How long work reports how far it got: ``progress(fraction, message)``, fraction in 0..1."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """The default reporter: says nothing."""


def scaled(progress: Progress, start: float, end: float) -> Progress:
    """A reporter for one stage of a larger task: maps 0..1 onto ``start..end`` of ``progress``."""

    def report(fraction: float, message: str) -> None:
        progress(start + (end - start) * min(max(fraction, 0.0), 1.0), message)

    return report
