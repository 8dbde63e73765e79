"""Names of data sets that every machine resolves: ``@<root>/<relative path>`` inside a named data root.

A config's ``training_csv`` is stored as ``@data/nba_games.csv``: the root
``data`` is each machine's own ``DATA_DIR`` (more roots come from
``DATA_ROOTS=name=path:...``), so two checkouts at different paths, or a Dask
worker with its data on another mount, read the same data set. A path given
when a config is saved (absolute, or relative to the project root) that lies
inside a root is stored in this form (:func:`to_stored`).

Documents written before keep working: an absolute path is read as it is,
any other relative path from the project root, as before; ``python -m cli
artifacts relocate`` rewrites them into the root form where they lie inside a
root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from models.errors import DataError
from models.settings import PROJECT_ROOT, ROOT_NAME, Settings

MARK = "@"


def is_root_ref(training_csv: str) -> bool:
    """Whether ``training_csv`` names a file in a data root (``@<root>/<path>``)."""
    return isinstance(training_csv, str) and training_csv.startswith(MARK)


def split_ref(training_csv: str) -> tuple[str, PurePosixPath]:
    """``(root name, relative path)`` of an ``@<root>/<path>`` reference; DataError naming what is wrong."""
    root, _, rest = training_csv[len(MARK) :].partition("/")
    rel = PurePosixPath(rest)
    if (
        not ROOT_NAME.fullmatch(root)
        or not rest
        or rel.is_absolute()
        or ".." in rel.parts
        or "\\" in rest
        or "\x00" in rest
    ):
        raise DataError(
            f"training CSV {training_csv!r} must look like @<root>/<path inside the root> "
            "(no '..', no absolute path)",
            field="training_csv",
        )
    return root, rel


def locate(training_csv: str, settings: Settings) -> Path:
    """Where ``training_csv`` points on this machine, as written (no symbolic link followed): ``@root/path``
    in this machine's root, an absolute path as it is, any other relative path from the project root
    (documents written before data roots). DataError for a malformed reference or an unknown root."""
    if not is_root_ref(training_csv):
        path = Path(training_csv).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path
    root_name, rel = split_ref(training_csv)
    roots = settings.named_data_roots
    if root_name not in roots:
        raise DataError(
            f"training CSV {training_csv!r} names the data root {root_name!r}, which this machine does "
            f"not have (DATA_ROOTS; it has {', '.join(sorted(roots))})",
            field="training_csv",
        )
    return Path(roots[root_name]).joinpath(*rel.parts)


def resolve(training_csv: str, settings: Settings) -> Path:
    """The file on this machine (:func:`locate`); an ``@root/path`` reference must stay inside its root."""
    path = locate(training_csv, settings)
    if not is_root_ref(training_csv):
        return path
    root_name = split_ref(training_csv)[0]
    root = Path(os.path.realpath(settings.named_data_roots[root_name]))
    path = Path(os.path.realpath(path))
    if not path.is_relative_to(root):
        raise DataError(
            f"training CSV {training_csv!r} resolves outside its data root {root_name!r} "
            "(symbolic link?); refused",
            field="training_csv",
        )
    return path


def to_stored(training_csv: str, settings: Settings) -> str:
    """The form to store: ``@root/path`` when the file lies inside a named root, else unchanged."""
    if not isinstance(training_csv, str) or not training_csv or is_root_ref(training_csv):
        return training_csv
    path = resolve(training_csv, settings)
    # the name as given (a symbolic link inside a root stays the link: it is followed, and checked, when
    # the file is read), with ``..`` folded; roots are compared as given and as resolved
    given = Path(os.path.abspath(path))
    best: tuple[int, str] | None = None
    for name, folder in settings.named_data_roots.items():
        for root in {Path(os.path.abspath(folder)), Path(os.path.realpath(folder))}:
            if given.is_relative_to(root) and given != root:
                depth = len(root.parts)
                if best is None or depth > best[0]:  # the innermost root wins
                    best = (depth, f"{MARK}{name}/{given.relative_to(root).as_posix()}")
    return best[1] if best else training_csv
