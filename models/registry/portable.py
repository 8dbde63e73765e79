"""Whether a fitted estimator leaves the service: its pickle may name only third-party modules.

Every deployment export (``models deploy-export``, ``models export-mlflow``) promises a file that loads where
only scikit-learn and the packages it names are installed; :func:`check_portable` refuses an estimator whose
pickle refers to this project's own code (XGBoost's label-encoding classifier, ``models.boosting``).
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from models.artifacts.base import PICKLE_PROTOCOL
from models.errors import ValidationError

PROJECT_MODULES = ("models", "cli", "web", "agents", "bench", "tests")


class _RecordingPickler(pickle.Pickler):
    """A pickler that notes the module of every class and function the pickle refers to."""

    def __init__(self, fh: io.BytesIO) -> None:
        super().__init__(fh, protocol=PICKLE_PROTOCOL)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        owner = obj if isinstance(obj, type) or callable(obj) else type(obj)
        module = getattr(owner, "__module__", None) or type(obj).__module__
        if isinstance(module, str):
            self.modules.add(module)
        return NotImplemented


def pickled(estimator: Any) -> tuple[bytes, set[str]]:
    """The estimator's pickle bytes and the modules they name (``sklearn.pipeline``, ``numpy``...)."""
    buffer = io.BytesIO()
    pickler = _RecordingPickler(buffer)
    pickler.dump(estimator)
    return buffer.getvalue(), pickler.modules


def refuse_project_modules(modules: set[str]) -> None:
    """ValidationError naming the modules of this project among ``modules``."""
    own = sorted(m for m in modules if m.partition(".")[0] in PROJECT_MODULES)
    if own:
        raise ValidationError(
            f"the estimator needs this project's own code ({', '.join(own)}) to load, so it would not load "
            "outside this project's environment; not exported",
            field="ref",
        )


def check_portable(estimator: Any) -> None:
    """ValidationError when ``estimator``'s pickle would need this project's own code to load."""
    refuse_project_modules(pickled(estimator)[1])
