"""Reading training data at scale: the project's loader vs bare pandas/pyarrow, time and peak memory.

Generates a ``--rows`` x 50 CSV (44 float columns, 2 integer columns, 4 string columns) in a temporary
folder, and the same data as Parquet. Each round (``--rounds``, interleaved, order shuffled) loads each
file in a fresh subprocess per method, so that one load's memory does not count in another's:

- CSV: ``models.training.data.load_training_data``'s file read (``_read_csv``: the frame and the SHA-256)
  vs bare ``pandas.read_csv(path)`` (no hash);
- Parquet: the same loader vs ``pyarrow.parquet.read_table(path).to_pandas()``.

Prints the median wall time and the peak RSS during the load above the RSS before it (the high-water mark
reset through /proc/self/clear_refs) of each, and the ratios.

    .venv/bin/python bench/bench_data_load.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (bench/bench_data_load.py) as well as with -m
    sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
method, path = sys.argv[1], Path(sys.argv[2])
import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.parquet  # imported before the measure starts
from models.training.data import _read_csv
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
try:
    open("/proc/self/clear_refs", "w").write("5")  # the high-water mark starts again from the current RSS
except OSError:
    pass
start = status("VmRSS")
t0 = time.perf_counter()
if method == "loader":
    frame, sha = _read_csv(path, str(path), 1 << 40)
elif method == "pandas":
    frame = pandas.read_csv(path)
else:
    frame = pyarrow.parquet.read_table(path).to_pandas()
seconds = time.perf_counter() - t0
peak = status("VmHWM")
print(json.dumps({"seconds": seconds, "peak_mb": peak - start, "shape": list(frame.shape)}))
"""


def make_data(folder: Path, rows: int, seed: int = 7) -> tuple[Path, Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = {f"x{i:02d}": rng.standard_normal(rows) for i in range(44)}
    data["count"] = rng.integers(0, 1000, rows)
    data["city"] = rng.choice(["paris", "lyon", "nice", "lille", "brest"], rows)
    data["grade"] = rng.choice(list("ABCDE"), rows)
    data["flag"] = rng.choice(["yes", "no"], rows)
    data["note"] = rng.choice(["a long free text value", "short", "another one here", "n/a"], rows)
    data["y"] = rng.integers(0, 2, rows)
    frame = pd.DataFrame(data)
    csv, parquet = folder / "data.csv", folder / "data.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    return csv, parquet


def measure(method: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(path), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the generated data (50 columns)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are printed)")
    args = ap.parse_args(argv)
    rounds = max(1, args.rounds)

    with tempfile.TemporaryDirectory(prefix="bench-data-load-") as tmp:
        csv, parquet = make_data(Path(tmp), args.rows)
        pairs = {
            "csv": [("loader", csv), ("pandas", csv)],
            "parquet": [("loader", parquet), ("pyarrow", parquet)],
        }
        results: dict[tuple[str, str], list[dict]] = {}
        measure("loader", csv)  # warm the page cache and the imports: not counted
        measure("pandas", csv)
        for _ in range(rounds):
            plan = [(kind, method, path) for kind, items in pairs.items() for method, path in items]
            random.shuffle(plan)
            for kind, method, path in plan:
                results.setdefault((kind, method), []).append(measure(method, path))
        load = os.getloadavg()
        print(
            f"bench_data_load: {args.rows:,} rows x 50 columns, CSV {csv.stat().st_size / 1e6:.0f} MB, "
            f"Parquet {parquet.stat().st_size / 1e6:.0f} MB; {os.cpu_count()} cores, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {rounds} rounds, fresh process per load, shuffled"
        )
        for kind, items in pairs.items():
            (ours, _), (theirs, _) = items
            medians = {}
            for method, _path in items:
                runs = results[(kind, method)]
                medians[method] = (
                    statistics.median(r["seconds"] for r in runs),
                    statistics.median(r["peak_mb"] for r in runs),
                )
                print(
                    f"  {kind:8s}{method:8s} {medians[method][0]:6.2f} s  peak {medians[method][1]:7.0f} MB"
                    f"  shape {runs[0]['shape']}"
                )
            (t1, m1), (t2, m2) = medians[ours], medians[theirs]
            print(f"  {kind}: loader / {theirs}: time {t1 / t2:.2f}x, peak memory {m1 / m2:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
