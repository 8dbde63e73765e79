"""Whether a fitted estimator leaves the service: its pickle may name only third-party modules.

Every deployment export (``models deploy-export``, ``models export-mlflow``) promises a file that loads where
only scikit-learn and the packages it names are installed: :func:`requirements` pins the packages a pickle
names and refuses one that refers to this project's own code (the exports turn the one such class,
``models.boosting.XGBLabelClassifier``, into XGBoost's and scikit-learn's own objects first).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import pickle
import sys
from typing import Any

from models.artifacts.base import PICKLE_PROTOCOL
from models.errors import ValidationError

PROJECT_MODULES = ("models", "cli", "web", "agents", "bench", "tests")
ALWAYS = ("scikit-learn", "numpy", "pandas", "scipy", "joblib")  # what a scikit-learn pickle loads with


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


def requirements(modules: set[str]) -> list[str]:
    """Pinned requirement lines for the packages that provide ``modules`` (standard library left out).

    ValidationError when a module is this project's own: the pickle would not load where only the listed
    packages are installed.
    """
    refuse_project_modules(modules)
    providers = importlib.metadata.packages_distributions()
    names = set(ALWAYS)
    for module in {m.partition(".")[0] for m in modules}:
        if module in sys.stdlib_module_names or module.startswith("_") or module == "builtins":
            continue
        names.update(providers.get(module, [module]))
    pins = []
    for name in sorted(names, key=str.lower):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
            continue
        pins.append(name)
    return pins
