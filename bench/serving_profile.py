"""Where our predict routes spend a request: cProfile of the Flask app called in-process, as waitress calls it.

Used by bench_serving.py (after its servers are stopped, so nothing competes): ``web.create_app`` over the
benchmark's database with the same API token, then ``app(environ, start_response)`` with a prebuilt WSGI
environ per body (a fresh ``wsgi.input`` each call): no HTTP client and no socket in the profile, only what
our server runs for a request after waitress has parsed it. Time is grouped by where it is spent; the time
of C functions and standard-library functions (hashing, sockets, ``warnings``...) counts for the package that
called them.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

# (label, path fragments); the first match wins, so the order matters (flask/json before flask).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database reads (pymongo, bson)", ("/pymongo/", "/bson/")),
    ("JSON parse/encode (json, flask.json)", ("/json/", "/simplejson/", "/orjson")),
    ("auth/token check (web/auth, web/credentials, hmac)", ("/web/auth.py", "/web/credentials.py", "/hmac.py")),
    ("Flask/Werkzeug routing, request, response", ("/flask/", "/werkzeug/", "/itsdangerous/", "/blinker/")),
    (
        "predict maths (sklearn, numpy, pandas, scipy)",
        ("/sklearn/", "/numpy/", "/pandas/", "/scipy/", "/joblib/", "/threadpoolctl"),
    ),
    ("our models/ code (own time)", ("/models/",)),
    ("our web/ code (own time)", ("/web/",)),
    ("logging", ("/logging/",)),
)
OTHER = "other (not reached from a category)"

# Project functions whose cumulative time per request is worth seeing: (path fragment, function name).
WATCHED: tuple[tuple[str, str], ...] = (
    ("/flask/app.py", "wsgi_app"),
    ("/web/auth.py", "_guard"),
    ("/web/auth.py", "bearer_token_valid"),
    ("/web/api/body.py", "json_object"),
    ("/web/predict.py", "predict_with_model"),
    ("/web/predict.py", "predict_with_ensemble"),
    ("/web/predict.py", "read_rows"),
    ("/web/predict.py", "check_features"),
    ("/models/registry/serving.py", "resolve_model"),
    ("/models/artifacts/loading.py", "load_model"),
    ("/models/ensembles/build.py", "load_ensemble"),
    ("/models/artifacts/predictor.py", "predict_records"),
    ("/models/artifacts/predictor.py", "prediction_records"),
    ("/models/artifacts/predictor.py", "outputs"),
    ("/models/artifacts/predictor.py", "transform"),
    ("/models/ensembles/stacking.py", "predict_records"),
    ("/flask/json/__init__.py", "jsonify"),
)
DB_CALLS = ("find_one", "find", "aggregate", "count_documents", "update_one", "insert_one", "find_one_and_update")


def _category(filename: str) -> str:
    for label, fragments in CATEGORIES:
        if any(f in filename for f in fragments):
            return label
    return OTHER


def _is_builtin(func: tuple[str, int, str]) -> bool:
    return func[0] == "~" or func[0].startswith("<")


def by_category(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) per category. The time of a C function or of a standard-library Python function
    (``warnings``, ``socket``, ``threading``...) goes to whoever called it, up the call edges (by each edge's
    share of the time) until a function of a category: a socket read by pymongo counts as a database read,
    sklearn's ``warnings.catch_warnings`` as predict maths."""
    table = stats.stats  # type: ignore[attr-defined]
    out: dict[str, float] = defaultdict(float)

    def give(func: tuple[str, int, str], amount: float, depth: int, edges_by: int) -> None:
        label = None if _is_builtin(func) else _category(func[0])
        if label is not None and label != OTHER:
            out[label] += amount
            return
        callers = table.get(func, (0, 0, 0.0, 0.0, {}))[4]
        shares = [(caller, edge[edges_by]) for caller, edge in callers.items() if caller != func]
        total = sum(w for _, w in shares)
        if depth > 12 or not shares or total <= 0:
            out[OTHER] += amount
            return
        for caller, weight in shares:
            give(caller, amount * weight / total, depth + 1, 3)  # further up: by cumulative time per edge

    for func, (_cc, _nc, tt, _ct, _callers) in table.items():
        if tt > 0:
            give(func, tt, 0, 2)  # first step: the edge's own time is exactly this function's time per caller
    return dict(out)


def watched(stats: pstats.Stats) -> list[tuple[str, int, float]]:
    """(name, calls, cumulative s) of the WATCHED functions that ran."""
    rows = []
    for func, (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for fragment, name in WATCHED:
            if func[2] == name and fragment in func[0]:
                rows.append((f"{fragment.strip('/').removesuffix('.py')}.{name}", nc, ct))
    order = {f"{f.strip('/').removesuffix('.py')}.{n}": i for i, (f, n) in enumerate(WATCHED)}
    return sorted(rows, key=lambda r: (order[r[0]], -r[2]))


def database_calls(stats: pstats.Stats) -> dict[str, int]:
    """How many times each pymongo Collection read/write method ran."""
    out: dict[str, int] = {}
    for func, (_cc, nc, _tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "/pymongo/" in func[0] and func[0].endswith("collection.py") and func[2] in DB_CALLS:
            out[func[2]] = out.get(func[2], 0) + nc
    return out


def top_own(stats: pstats.Stats, n: int) -> list[tuple[str, int, float]]:
    """The ``n`` functions with the most own time (C functions included)."""
    items = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # type: ignore[attr-defined]
    out = []
    for func, (_cc, nc, tt, _ct, _callers) in items:
        where = func[2] if _is_builtin(func) else f"{_short(func[0])}:{func[1]}({func[2]})"
        out.append((where, nc, tt))
    return out


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class InProcess:
    """Our Flask app called as waitress calls it, one prebuilt environ per (path, body)."""

    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        from werkzeug.test import EnvironBuilder

        self.app, self.headers, self._builder = app, headers, EnvironBuilder
        self._environs: dict[tuple[str, bytes], dict[str, Any]] = {}

    def _environ(self, path: str, body: bytes) -> dict[str, Any]:
        key = (path, body)
        if key not in self._environs:
            env = self._builder(
                path=path,
                method="POST",
                data=body,
                headers=self.headers,
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
            ).get_environ()
            env.pop("wsgi.input", None)
            self._environs[key] = env
        return self._environs[key]

    def call(self, path: str, body: bytes) -> bytes:
        environ = dict(self._environ(path, body))
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def start_response(s: str, headers: list, exc_info: Any = None) -> None:
            status.append(s)

        result: Iterable[bytes] = self.app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not status or not status[0].startswith("200"):
            raise SystemExit(f"in-process {path}: {status[:1]} {data[:300]!r}")
        return data


def profile_target(client: InProcess, path: str, bodies: list[bytes], n: int) -> dict[str, Any]:
    """Wall time per request without and with the profiler, and the profile's summaries."""
    for body in bodies[:30]:  # warm: everything loaded, caches filled
        client.call(path, body)
    t0 = time.perf_counter()
    for i in range(n):
        client.call(path, bodies[i % len(bodies)])
    plain = (time.perf_counter() - t0) / n
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        client.call(path, bodies[i % len(bodies)])
    prof.disable()
    stats = pstats.Stats(prof)
    return {
        "plain_s": plain,
        "profiled_s": stats.total_tt / n,  # type: ignore[attr-defined]
        "categories": by_category(stats),
        "watched": watched(stats),
        "db_calls": database_calls(stats),
        "top": top_own(stats, 12),
    }


def print_profile(target: str, batch: int, n: int, result: dict[str, Any]) -> None:
    total = result["profiled_s"]
    print(
        f"  {target}, {batch} row{'s' if batch > 1 else ''}: {result['plain_s'] * 1e6:.0f} us per request in-process without the profiler, "
        f"{total * 1e6:.0f} us with it ({n} requests); own time by where it is spent, per request:"
    )
    for label, secs in sorted(result["categories"].items(), key=lambda kv: kv[1], reverse=True):
        if secs / n >= 1e-6:
            print(f"    {label:<52}{secs / n * 1e6:>8.0f} us {secs / total / n * 100 if total else 0:>5.1f}%")
    calls = ", ".join(f"{k} x{v / n:.1f}" for k, v in sorted(result["db_calls"].items())) or "none"
    print(f"    pymongo Collection calls per request: {calls}")
    print("    cumulative per request (includes callees):")
    for name, nc, ct in result["watched"]:
        print(f"      {name:<48}{ct / n * 1e6:>8.0f} us  ({nc / n:.1f} calls)")
    print("    most own time per request:")
    for where, nc, tt in result["top"][:8]:
        print(f"      {where[:78]:<78}{tt / n * 1e6:>7.0f} us  ({nc / n:.1f} calls)")
