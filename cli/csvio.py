"""Reading a user's CSV argument and writing predictions, shared by ``predict`` and ``ensemble predict``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import pandas as pd

from cli.context import info
from models.artifacts.atomic import atomic_write_bytes
from models.artifacts.prediction_csv import to_safe_csv
from models.artifacts.predictor import with_predictions
from models.errors import ValidationError
from models.jsonable import to_json


def read_csv_arg(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ValidationError(f"CSV file {str(path)!r} not found", field="--csv")
    try:
        frame = pd.read_csv(path)
    except UnicodeDecodeError:
        raise ValidationError(f"CSV file {str(path)!r} is not UTF-8 text", field="--csv") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(
            f"CSV file {str(path)!r} cannot be read: {str(exc).strip()}", field="--csv"
        ) from None
    if frame.empty:
        raise ValidationError(f"CSV file {str(path)!r} has no rows", field="--csv")
    return frame


def write_predictions(
    frame: pd.DataFrame, table: pd.DataFrame, out: Path | None, as_json: bool, meta: dict[str, Any]
) -> None:
    """The input rows with prediction columns appended, as CSV to ``out`` (atomically) or stdout,
    formula-like cells escaped (see :mod:`models.artifacts.prediction_csv`); with ``--json``, a JSON
    object holding the predictions on stdout (full float precision).

    Input columns named like a prediction column (``prediction``, ``proba_<class>``, e.g. from an earlier
    run) are replaced by the new values, never duplicated."""
    merged, clash = with_predictions(frame, table)
    if clash:
        info(
            f"note: the input's column{'s' if len(clash) > 1 else ''} {', '.join(clash)} "
            f"{'are' if len(clash) > 1 else 'is'} replaced by the new predictions"
        )
    if out is not None:
        atomic_write_bytes(out, to_safe_csv(merged).encode())
        info(f"wrote {len(table)} predictions to {out}")
    if as_json:
        records = [to_json(r) for r in table.to_dict(orient="records")]
        click.echo(
            json.dumps({**meta, "rows": len(table), **({"out": str(out)} if out else {}), "predictions": records})
        )
    elif out is None:
        sys.stdout.write(to_safe_csv(merged))
