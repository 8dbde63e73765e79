"""Cold load, side by side: the verified fast path vs MLflow (pickle format), joblib.load and pickle.load.

For random forests whose model file is about 10, 50 and 200 MB, each load runs in a fresh process
(nothing cached in it; the OS page cache is warm for every method alike), the methods interleaved in
a shuffled order each round, and the medians of the rounds are compared:

* **verified**  - ``models.artifacts.loading.load_model`` (what the stacking tool and the API do once the
  config document is read): model + scaler + features, every block checked before it reaches the
  unpickler; artifact format 2 (BLAKE3 of 1 MiB blocks, what training writes now);
* **verified_f1** - the same files with format-1 refs (SHA-256 of 256 KiB blocks, what the previous
  version wrote and what ``artifacts sign --all`` converts): the before of this round;
* **mlflow**    - ``mlflow.sklearn.load_model`` of the same scaler + model saved by
  ``mlflow.sklearn.save_model(..., serialization_format="pickle")`` (one Pipeline, no checks);
* **joblib**    - ``joblib.load`` of our model and scaler files;
* **pickle**    - ``pickle.load`` of the same two files.

Each child first loads a one-tree model the same way (imports and class look-ups done), then times
the load call alone; memory is the peak resident memory the load added
(``VmHWM`` after it, reset before it through ``/proc/self/clear_refs``, minus ``VmRSS`` before it).

Needs MLflow, which is not a runtime requirement: run it in the bench venv (see README "Benchmarks"):

    /work/wt/bench-venv/bin/python -m bench.bench_cold_load [--sizes 10,50,200] [--rounds 7]

Prints the ratios last; targets: verified <= 1.15x pickle.load in time, <= 1.1x joblib in peak memory.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("verified", "verified_f1", "mlflow", "joblib", "pickle")
FEATURES = [f"f{i}" for i in range(8)]


def _status(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------- children (one load each)


def loader(method: str, folder_p: Path):
    """A function that loads the model in ``folder_p`` the way ``method`` does."""
    doc = json.loads((folder_p / ("doc_f1.json" if method == "verified_f1" else "doc.json")).read_text())
    if method.startswith("verified"):
        from models.artifacts.cache import ModelCache
        from models.artifacts.loading import load_model
        from models.settings import Settings

        settings = Settings.from_env({}).with_(artifact_dir=folder_p / "artifacts", var_dir=folder_p / "var")
        return lambda: load_model(settings, doc, cache=ModelCache(), use_cache=False).model
    if method == "mlflow":
        import mlflow.sklearn

        return lambda: mlflow.sklearn.load_model(str(folder_p / "mlflow_model"))
    import pickle

    import joblib

    paths = [
        folder_p / "artifacts" / doc["model_artifact_path"],
        folder_p / "artifacts" / doc["scaler_artifact_path"],
    ]
    if method == "joblib":
        return lambda: [joblib.load(p) for p in paths]

    def load():
        out = []
        for p in paths:
            with open(p, "rb") as fh:
                out.append(pickle.load(fh))
        return out

    return load


def child(method: str, folder: str, tiny: str) -> dict:
    """One timed load in this fresh process, after a load of a one-tree model the same way (so every method
    has imported its modules and classes before the clock starts)."""
    loader(method, Path(tiny))()
    load = loader(method, Path(folder))
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    before = _status("VmRSS")
    t0 = time.perf_counter()
    obj = load()
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM") - before
    assert obj is not None
    return {"seconds": seconds, "peak_mb": peak}


# ----------------------------------------------------------------- setup (once per size)


def make_model(folder: Path, target_mb: float, seed: int = 0) -> dict:
    """A random forest of about ``target_mb`` written three ways: our artifacts, and an MLflow model."""
    import pickle

    import mlflow.sklearn
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from models.artifacts.base import json_writer, pickle_writer
    from models.artifacts.local import LocalArtifactStore
    from models.artifacts.signing import get_signer
    from models.settings import Settings

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20_000, len(FEATURES)))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=1.0, size=len(X)) > 0).astype(int)
    scaler = StandardScaler().fit(X)
    probe = RandomForestClassifier(n_estimators=4, random_state=seed, n_jobs=2).fit(scaler.transform(X), y)
    per_tree = len(pickle.dumps(probe, protocol=5)) / 4
    trees = max(1, round(target_mb * 1e6 / per_tree)) if target_mb > 0 else 1
    model = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=2).fit(scaler.transform(X), y)
    store = LocalArtifactStore(folder / "artifacts")
    signer = get_signer(Settings.from_env({}).with_(artifact_dir=folder / "artifacts", var_dir=folder / "var"))
    run_id = f"bench_{target_mb:g}mb".replace(".", "_")
    infos = {
        "model": store.write(f"{run_id}_model.pkl", pickle_writer(model)),
        "scaler": store.write(f"{run_id}_scaler.pkl", pickle_writer(scaler)),
        "features": store.write(f"{run_id}_features.json", json_writer(FEATURES)),
    }
    infos = {k: signer.sign_info(v) for k, v in infos.items()}  # as training signs them
    import sklearn

    doc = {
        "name": run_id,
        "run_id": run_id,
        "task": "classification",
        "model_artifact_path": infos["model"].path,
        "scaler_artifact_path": infos["scaler"].path,
        "features_path": infos["features"].path,
        "checksums": {k: v.sha256 for k, v in infos.items()},
        "artifacts": {k: v.to_dict() for k, v in infos.items()},
        "versions": {"sklearn": sklearn.__version__},
    }
    (folder / "doc.json").write_text(json.dumps(doc))
    from models.artifacts.blocks import digests_of

    old = {}
    for kind, info in infos.items():
        ref = {"path": info.path, "sha256": info.sha256, "size": info.size, "chunk_size": 256 * 1024}
        ref["chunk_sha256"] = digests_of((folder / "artifacts" / info.path).read_bytes(), 256 * 1024, "sha256")
        old[kind] = {**ref, "signature": signer.sign_ref(ref)}
    (folder / "doc_f1.json").write_text(json.dumps({**doc, "artifacts": old}))
    mlflow.sklearn.save_model(
        Pipeline([("scaler", scaler), ("model", model)]),
        str(folder / "mlflow_model"),
        serialization_format="pickle",
        pip_requirements=[],
    )
    for p in folder.rglob("*"):  # warm the page cache for every method alike
        if p.is_file():
            p.read_bytes()
    return {
        "trees": trees,
        "model_mb": infos["model"].size / 1e6,
        "mlflow_mb": sum(p.stat().st_size for p in (folder / "mlflow_model").rglob("*.pkl")) / 1e6,
    }


def run_child(method: str, folder: Path, tiny: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_cold_load", "--child", method, str(folder), str(tiny)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="model sizes in MB, comma-separated")
    parser.add_argument("--rounds", type=int, default=7, help="fresh-process loads per method and size (>= 5)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    sizes = [float(s) for s in args.sizes.split(",")]
    load_before = open("/proc/loadavg").read().split()[:3]
    print(
        f"bench_cold_load: {os.cpu_count()} cores, load average {' '.join(load_before)} before the run; "
        f"{args.rounds} rounds, fresh process per load, methods shuffled each round"
    )
    results: dict[float, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        folders = {}
        tiny = Path(tmp) / "tiny"
        tiny.mkdir()
        make_model(tiny, 0)
        for size in sizes:
            folders[size] = Path(tmp) / f"{size:g}mb"
            folders[size].mkdir()
            made = make_model(folders[size], size)
            print(
                f"  {size:g} MB target: random forest of {made['trees']} trees, model file "
                f"{made['model_mb']:.1f} MB (mlflow model.pkl {made['mlflow_mb']:.1f} MB)"
            )
            results[size] = {m: [] for m in METHODS}
        rng = random.Random(0)
        for _ in range(args.rounds):
            for size in sizes:
                order = list(METHODS)
                rng.shuffle(order)
                for method in order:
                    results[size][method].append(run_child(method, folders[size], tiny))
    load_after = open("/proc/loadavg").read().split()[:3]
    print(f"\n{'size':>6} {'method':<9} {'median ms':>10} {'min ms':>8} {'peak MB':>8}")
    ratios = []
    for size in sizes:
        med = {m: statistics.median(r["seconds"] for r in results[size][m]) for m in METHODS}
        peak = {m: statistics.median(r["peak_mb"] for r in results[size][m]) for m in METHODS}
        for m in METHODS:
            print(
                f"{size:>5g}M {m:<9} {med[m] * 1e3:10.1f} {min(r['seconds'] for r in results[size][m]) * 1e3:8.1f} "
                f"{peak[m]:8.1f}"
            )
        ratios.append(
            (
                size,
                med["verified"] / med["mlflow"],
                med["verified"] / med["joblib"],
                med["verified"] / med["pickle"],
                peak["verified"] / peak["joblib"],
                med["verified_f1"] / med["pickle"],
            )
        )
    print(f"load average {' '.join(load_after)} after the run")
    print("\nratios (medians; verified / other):")
    met = True
    for size, vs_mlflow, vs_joblib, vs_pickle, mem, f1_vs_pickle in ratios:
        ok = vs_pickle <= 1.15 and mem <= 1.1
        met &= ok
        print(
            f"  {size:>4g} MB: time vs pickle.load {vs_pickle:.2f}x (target <= 1.15; format 1 was "
            f"{f1_vs_pickle:.2f}x), vs mlflow {vs_mlflow:.2f}x, vs joblib {vs_joblib:.2f}x; "
            f"peak memory vs joblib {mem:.2f}x (target <= 1.1){'' if ok else '  NOT met'}"
        )
    print("targets met" if met else "targets NOT met")


if __name__ == "__main__":
    main()
