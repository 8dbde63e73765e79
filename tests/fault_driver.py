"""A training process that the fault tests kill with SIGKILL at a precise point.

Run as ``python -m tests.fault_driver POINT CONFIG [--job]`` with the settings in the
environment (``MONGO_URI``, ``MONGO_DB``, ``ARTIFACT_DIR``, ``VAR_DIR``). Faults are injected
here, by wrapping functions inside this process only (nothing in ``models/`` knows about it):
when training reaches ``POINT`` the driver prints ``MARKER <POINT>`` on stdout, flushes, and
sleeps until it is killed. Points:

- ``cv``: inside cross-validation, after the first fold was scored;
- ``write``: while writing the run's files: the model file is complete, the scaler's temp
  file is half written;
- ``before_run``: every file written, the run document not yet inserted;
- ``after_run``: run document inserted, the config document (the commit point) not yet updated;
- ``none``: no fault; the training runs to its end (prints ``DONE <run_id>``).

``ensemble NAME BASE...`` (instead of POINT CONFIG) waits for the file named by ``GO_FILE`` (if
set) and then creates an ensemble through the stacking tool, printing ``DONE <json>``; the
concurrency tests use it as "another process".

With ``--job`` the training runs as a background job (models.jobs, in-process runner), as the
web app runs it, so the job document is left ``running`` by the kill.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HANG_SECONDS = 120  # the test kills us long before; bounded so a forgotten driver ends by itself


def marker(point: str) -> None:
    sys.stdout.write(f"MARKER {point}\n")
    sys.stdout.flush()
    time.sleep(HANG_SECONDS)
    sys.stdout.write("NOT KILLED\n")
    os._exit(3)


def install(point: str) -> None:
    import models.artifacts.local as artifacts
    import models.training.train as training
    from models.store.runs import RunStore

    if point == "cv":
        real_score = training.fold_score
        calls = {"n": 0}

        def fold_score(*a, **k):
            calls["n"] += 1
            out = real_score(*a, **k)
            if calls["n"] == 1:
                marker(point)
            return out

        training.fold_score = fold_score
    elif point == "write":
        real_write = artifacts.atomic_write

        def atomic_write(path, writer, *a, **k):
            if not Path(path).name.endswith("_scaler.pkl"):
                return real_write(path, writer, *a, **k)

            def half(fh):
                fh.write(b"\x80\x04partial-scaler-bytes" * 64)
                fh.flush()
                marker(point)

            return real_write(path, half, *a, **k)

        artifacts.atomic_write = atomic_write
    elif point in ("before_run", "after_run"):
        real_insert = RunStore.insert_versioned

        def insert_versioned(self, run, version=None, **k):
            if point == "before_run":
                marker(point)
            out = real_insert(self, run, version, **k)
            marker(point)
            return out

        RunStore.insert_versioned = insert_versioned
    elif point != "none":
        raise SystemExit(f"unknown point {point!r}")


def wait_for_go() -> None:
    go = os.environ.get("GO_FILE")
    if not go:
        return
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no GO_FILE within 60 s")
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    from models.settings import get_settings
    from models.store.db import Database

    database = Database.connect(get_settings())
    if argv[0] == "ensemble":
        from agents.tools.stacking_tool import StackingTool
        from models.jsonable import to_json

        wait_for_go()
        with StackingTool(database=database, lock_timeout=90) as tool:
            record = tool.create_ensemble(argv[1], argv[2:])
        sys.stdout.write("DONE " + json.dumps(to_json({"base_models": record["base_models"]})) + "\n")
        return 0
    if argv[0] == "train":  # train NAME: plain training, after GO_FILE
        from models.training.train import train_config

        wait_for_go()
        run = train_config(database, argv[1])
        sys.stdout.write(f"DONE {run['run_id']} {run['version']}\n")
        return 0
    point, name = argv[0], argv[1]
    install(point)
    from models.training.train import train_config

    if "--job" in argv:
        from models import jobs
        from models.store.configs import ConfigStore

        config = ConfigStore(database).get(name)

        def work(progress):
            run = train_config(database, config["_id"], progress=progress, requested_by="fault-driver")
            return {"run_id": run["run_id"]}

        job, _ = jobs.submit(database, None, "train", f"train:{name}", work, params={"config": name})
        sys.stdout.write(f"JOB {job['_id']}\n")
        sys.stdout.flush()
        done = jobs.wait(database, job["_id"], timeout=HANG_SECONDS)
        sys.stdout.write(f"DONE {done['status']}\n")
        return 0
    run = train_config(database, name, requested_by="fault-driver")
    sys.stdout.write(f"DONE {run['run_id']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
