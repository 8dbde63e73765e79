"""The bare minimum that serves a model over HTTP: waitress, a pickle-loaded model, no auth, no validation.

What a data scientist would write in ten minutes, to compare our predict routes with (bench_serving.py).
``python -m bench.bare_app SPEC PORT THREADS``: ``SPEC`` is a pickle (written by the benchmark from the
same fitted scaler and estimator objects our service serves) holding ``{"model": (features, scaler,
estimator), "ensemble": {"bases": [(features, scaler, estimator), ...], "meta": meta_model}}``.
``POST /model`` and ``POST /ensemble`` take ``{"rows": [{feature: value}, ...]}`` and answer
``{"predictions": [{"prediction": ..., "proba_<class>": ...}]}``, the shape our API answers in.
"""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
from waitress import serve


def _matrix(rows: list[dict], features: list[str]) -> np.ndarray:
    return np.array([[row[f] for f in features] for row in rows], dtype=float)


def _answer(classes: np.ndarray, proba: np.ndarray) -> list[dict]:
    labels = classes[np.argmax(proba, axis=1)]
    return [
        {"prediction": label.item(), **{f"proba_{c}": float(p) for c, p in zip(classes, row)}}
        for label, row in zip(labels, proba)
    ]


def make_app(spec: dict):
    features, scaler, model = spec["model"]
    bases, meta = spec["ensemble"]["bases"], spec["ensemble"]["meta"]

    def predict_model(rows: list[dict]) -> list[dict]:
        return _answer(model.classes_, model.predict_proba(scaler.transform(_matrix(rows, features))))

    def predict_ensemble(rows: list[dict]) -> list[dict]:
        blocks = [m.predict_proba(s.transform(_matrix(rows, f)))[:, 1:] for f, s, m in bases]  # binary: class 1
        return _answer(meta.classes_, meta.predict_proba(np.hstack(blocks)))

    routes = {"/model": predict_model, "/ensemble": predict_ensemble}

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length))
        out = json.dumps({"predictions": routes[environ["PATH_INFO"]](body["rows"])}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
        return [out]

    return app


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as fh:
        loaded = pickle.load(fh)
    serve(make_app(loaded), host="127.0.0.1", port=int(sys.argv[2]), threads=int(sys.argv[3]), _quiet=True)
