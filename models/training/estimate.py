"""How long a training will take, from the stored durations of past runs; and which model types are slow.

An estimate uses the runs of the same task and model type (those of the same config first), each scaled
to the config's row count by the model type's growth (linear, or quadratic for kernel SVMs), and takes
the median. Counting the rows reads the CSV's bytes once (no parsing), or a Parquet file's footer.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from models.errors import DataError
from models.store.db import Database
from models.store.runs import RunStore
from models.tabular import is_parquet, parquet_rows
from models.training.data import resolve_csv

# training time grows with rows ** exponent (kernel SVMs are quadratic or worse)
ROW_EXPONENT = {"svm": 2.0, "knn": 1.5}
# (model type, rows above which it is slow, why)
SLOW_TYPES = {
    "svm": (10_000, "a kernel SVM's training time grows with the square of the rows"),
    "knn": (200_000, "k-nearest neighbours predicts by comparing every row with every other"),
}
RUNS_CONSIDERED = 20
NEAREST_RUNS = 5  # of those, the closest in row count


@dataclass
class Estimate:
    """About ``seconds`` to train (None: no past run to go by), and what it is based on."""

    seconds: float | None
    basis: str
    rows: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": None if self.seconds is None else float(f"{self.seconds:.3g}"),
            "basis": self.basis,
            "rows": self.rows,
        }

    def text(self) -> str:
        """``about 27 s (from 3 past random_forest runs)`` or ``no estimate (...)``."""
        if self.seconds is None:
            return f"no estimate ({self.basis})"
        return f"about {format_seconds(self.seconds)} ({self.basis})"


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def count_rows(training_csv: str) -> int | None:
    """Data rows of a CSV (lines after the header) or of a Parquet file (from its footer); None if it cannot
    be read."""
    try:
        path = resolve_csv(training_csv)
        if is_parquet(path) or is_parquet(training_csv):
            return parquet_rows(path)
        with path.open("rb") as fh:
            lines, last = 0, b"\n"
            while block := fh.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
    except (OSError, ValueError, DataError):
        return None
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def estimate_training(database: Database, config: dict[str, Any], rows: int | None = None) -> Estimate:
    """How long training ``config`` should take, judged from past runs of its model type.

    Of each past run only the fitting (``cv_s``, ``final_fit_s``) grows with the rows (by the model type's
    exponent) and the folds, and reading the file (``load_s``) with the rows; the rest of it (evaluating,
    saving) is taken as it was: scaling a small run's fixed costs up with the rows overestimated large
    trainings several times over. The past runs closest in size to ``rows`` are used first."""
    rows = rows if rows is not None else count_rows(config.get("training_csv") or "")
    model_type, task = config.get("model_type"), config.get("task")
    query = {"task": task, "model_type": model_type, "durations.total_s": {"$gt": 0}, "data.rows_used": {"$gt": 0}}
    fields = {"name": 1, "durations": 1, "data.rows_used": 1, "config.cv_folds": 1}
    store = RunStore(database)
    newest = [("created_at", -1)]
    runs = store.search(
        {**query, "name": config.get("name")}, projection=fields, order=newest, limit=RUNS_CONSIDERED
    )
    own = bool(runs)
    if not runs:
        runs = store.search(query, projection=fields, order=newest, limit=RUNS_CONSIDERED)
    if not runs:
        return Estimate(None, f"no past {model_type} runs to go by", rows)
    if rows:  # the nearest in size: the less a run is scaled, the better it predicts
        runs = sorted(runs, key=lambda run: abs(math.log(rows / int(run["data"]["rows_used"]))))[:NEAREST_RUNS]
    exponent = ROW_EXPONENT.get(str(model_type), 1.0)
    folds = int(config.get("cv_folds") or 5)
    scaled = [_scaled_seconds(run, rows, exponent, folds) for run in runs]
    whose = f"{config.get('name')}'s" if own else f"{model_type}"
    plural = "s" if len(runs) != 1 else ""
    size = f" scaled to {rows:,} rows" if rows else ""
    return Estimate(statistics.median(scaled), f"from {len(runs)} past {whose} run{plural}{size}", rows)


def _scaled_seconds(run: dict[str, Any], rows: int | None, exponent: float, folds: int) -> float:
    """A past run's duration scaled to ``rows`` rows and ``folds`` folds."""
    durations = run["durations"]
    past_rows = int(run["data"]["rows_used"])
    past_folds = int((run.get("config") or {}).get("cv_folds") or folds)
    ratio = rows / past_rows if rows else 1.0
    fold_factor = (folds + 1) / (past_folds + 1)
    total = float(durations["total_s"])
    if "cv_s" not in durations:  # runs from before the split durations: all of it scales
        return total * ratio**exponent * fold_factor
    cv, final = float(durations.get("cv_s") or 0), float(durations.get("final_fit_s") or 0)
    loading = float(durations.get("load_s") or 0)
    rest = max(total - cv - final - loading, 0.0)
    return _fitting_seconds(cv, final, past_folds, folds, ratio, exponent) + loading * ratio + rest


def _fitting_seconds(cv: float, final: float, past_folds: int, folds: int, ratio: float, exponent: float) -> float:
    """The cross-validation and final fit of a past run, scaled ``ratio`` times the rows and to ``folds`` folds.

    A fit takes ``fixed + growing * rows**exponent``. The run's own numbers tell the two apart: each of its
    ``past_folds`` fold fits saw ``(k-1)/k`` of the rows its final fit saw, so what the final fit took beyond
    an average fold fit is what grew with the rows. At least a quarter of a fit is taken to grow (timings of
    tiny fits are mostly noise, and underestimating a large training is the worse mistake). The measured
    times are scaled by that model, so the same rows and folds give back exactly what was measured."""
    scale = ratio**exponent
    if past_folds < 2 or final <= 0:
        return (cv + final) * scale * (folds / past_folds if past_folds >= 2 and folds >= 2 else 1.0)
    shrink = ((past_folds - 1) / past_folds) ** exponent
    growing = min(max((final - cv / past_folds) / (1 - shrink), 0.25 * final), final)
    fixed = final - growing
    fold_now = fixed + growing * shrink
    fold_new = fixed + growing * (((folds - 1) / folds) ** exponent if folds >= 2 else 0.0) * scale
    fold_fits = cv * (fold_new / fold_now) * (folds / past_folds) if folds >= 2 else 0.0
    return fold_fits + fixed + growing * scale


def slow_warning(config: dict[str, Any], rows: int | None) -> str | None:
    """A warning when the model type is known to be slow for this many rows; None otherwise."""
    model_type = str(config.get("model_type"))
    if model_type not in SLOW_TYPES or rows is None:
        return None
    limit, why = SLOW_TYPES[model_type]
    if rows <= limit:
        return None
    return (
        f"{config.get('name')}: {model_type} on {rows:,} rows may take a long time ({why}); "
        f"consider another model type or fewer rows"
    )
