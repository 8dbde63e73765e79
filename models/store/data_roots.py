"""Where training data may come from: ``training_csv`` must resolve inside one of ``DATA_ROOTS``.

Checked when a config is saved (``ConfigStore.create``/``update``, so the CLI, the API and the form
all get it) and again when it trains (the file may have become a symbolic link meanwhile). The
refusal names the setting and the configured roots and says nothing about the file: the text is
the same whether it exists or not, so the service cannot be used to probe the server's file system.
"""

from __future__ import annotations

from pathlib import Path

from models.errors import DataError, ValidationError
from models.settings import Settings
from models.store.datarefs import locate


def outside_data_roots(settings: Settings) -> str:
    """The refusal of a training_csv outside every data root, naming the roots as configured (name=path:
    ``data`` is DATA_DIR, the others come from DATA_ROOTS), so the user sees where a file must be.
    The same text whether the file exists or not."""
    roots = ", ".join(f"{name}={path}" for name, path in settings.named_data_roots.items()) or "none"
    return (
        "training_csv must name a file inside the data folders this service reads from "
        f"(DATA_DIR and setting DATA_ROOTS: {roots}); this one is not"
    )


def check_data_root(training_csv: str, settings: Settings) -> Path:
    """The file's real path (symbolic links and ``..`` resolved) when it lies inside one of
    ``DATA_ROOTS``; else :class:`ValidationError` on ``training_csv`` naming the setting and the roots."""
    try:
        real = locate(training_csv, settings).resolve()
    except DataError as exc:  # "@root/path" naming a root this machine does not have
        raise ValidationError(exc.message, field="training_csv") from None
    except (OSError, RuntimeError, ValueError):  # a link loop, an unreadable folder, a NUL byte
        raise ValidationError(outside_data_roots(settings), field="training_csv") from None
    for root in settings.effective_data_roots:
        try:
            real_root = root.expanduser().resolve()
        except (OSError, RuntimeError):
            continue
        if real != real_root and real.is_relative_to(real_root):
            return real
    raise ValidationError(outside_data_roots(settings), field="training_csv")
