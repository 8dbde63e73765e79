"""`models export-mlflow REF --out DIR` writes an MLflow model folder without MLflow being installed: the
layout and MLmodel of `mlflow.sklearn.save_model(..., serialization_format="pickle")` around the very
estimator `models deploy-export` builds, written atomically. Where a Python with MLflow 3.17.2 exists
(``MLFLOW_PYTHON``, else the bench virtualenv of README "Benchmarks"), `mlflow.pyfunc.load_model` and
`mlflow models serve` predict with it what the service predicts."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import platform
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import yaml
from click.testing import CliRunner

import models.registry.mlflow_export as mlflow_export
from cli.context import AppContext
from cli.main import cli
from models.ensembles.build import create_ensemble, load_ensemble
from models.errors import NotFoundError, ValidationError
from models.registry import deploy_export, export_mlflow, load
from models.store.configs import ConfigStore
from models.store.embedded import free_port
from models.training.train import train_config
from tests.helpers import FEATS, cls_config, reg_config

FILES = {"MLmodel", "model.pkl", "requirements.txt", "python_env.yaml", "conda.yaml"}
BENCH_PYTHON = Path("/work/wt/bench-venv/bin/python")


@pytest.fixture
def trained(database, games_csv):
    store = ConfigStore(database)
    for doc in (
        cls_config("c_lr", games_csv),
        cls_config("c_nb", games_csv, "naive_bayes"),
        reg_config("r_ridge", games_csv),
    ):
        store.create(doc)
        train_config(database, doc["name"])
    create_ensemble(database, "stack_cls", ["c_lr", "c_nb"], "logistic_regression")
    return database


def _mlmodel(folder: Path) -> dict:
    return yaml.safe_load((folder / "MLmodel").read_text())


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".tmp-")]


def test_model_folder_has_mlflows_layout_and_the_deploy_export_pipeline(trained, games_csv, tmp_path):
    out = tmp_path / "mlflow" / "c_lr"
    result = export_mlflow(trained, "c_lr", out)
    run = load(trained, "c_lr").run
    assert {p.name for p in out.iterdir()} == FILES and _leftovers(out.parent) == []
    assert result["run_id"] == run["run_id"] and result["version"] == run["version"]
    assert result["served"] == "current" and result["kind"] == "Pipeline" and result["path"] == str(out)
    doc = _mlmodel(out)
    pyfunc, flavor = doc["flavors"]["python_function"], doc["flavors"]["sklearn"]
    assert pyfunc["loader_module"] == "mlflow.sklearn" and pyfunc["model_path"] == "model.pkl"
    assert pyfunc["predict_fn"] == "predict" and pyfunc["python_version"] == platform.python_version()
    assert pyfunc["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert flavor == {
        "code": None,
        "pickled_model": "model.pkl",
        "serialization_format": "pickle",
        "sklearn_version": sklearn.__version__,
        "skops_trusted_types": None,
    }
    assert "mlflow_version" not in doc and len(doc["model_uuid"]) == 32
    inputs = json.loads(doc["signature"]["inputs"])
    assert [c["name"] for c in inputs] == FEATS and {c["type"] for c in inputs} == {"any"}
    assert json.loads(doc["signature"]["outputs"])[0]["tensor-spec"]["dtype"] == "int64"
    assert doc["metadata"]["run_id"] == run["run_id"] and doc["metadata"]["features"] == FEATS
    requirements = (out / "requirements.txt").read_text().splitlines()
    for pin in (
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"joblib=={joblib.__version__}",
    ):
        assert pin in requirements
    assert requirements[0].startswith("mlflow") and not any(r.startswith("cloudpickle") for r in requirements)
    python_env = yaml.safe_load((out / "python_env.yaml").read_text())
    assert python_env["python"] == platform.python_version()
    assert python_env["dependencies"] == ["-r requirements.txt"]
    conda = yaml.safe_load((out / "conda.yaml").read_text())
    assert conda["dependencies"][0] == f"python={platform.python_version()}"
    assert conda["dependencies"][-1]["pip"] == requirements
    # model.pkl is what deploy-export writes, and predicts what the service predicts
    rows = pd.read_csv(games_csv, nrows=200)
    with open(out / "model.pkl", "rb") as fh:
        estimator = pickle.load(fh)
    deployed = joblib.load(deploy_export(trained, "c_lr", tmp_path / "deploy")["pipeline_path"])
    service = load(trained, run["run_id"]).model
    assert type(estimator) is type(deployed)
    assert (estimator.predict(rows) == service.predict(rows)).all()
    np.testing.assert_allclose(estimator.predict_proba(rows), service.predict_proba(rows), atol=1e-12, rtol=0)
    np.testing.assert_allclose(estimator.predict_proba(rows), deployed.predict_proba(rows), atol=0, rtol=0)
    # every reference deploy-export takes
    for ref in ("c_lr@latest", f"c_lr@{run['version']}", run["run_id"]):
        again = export_mlflow(trained, ref, tmp_path / "refs" / ref.replace("@", "_"))
        assert again["run_id"] == run["run_id"], ref


def test_stacked_ensemble_folder(trained, games_csv, tmp_path):
    out = tmp_path / "stack"
    result = export_mlflow(trained, "stack_cls", out)
    service = load_ensemble(trained, "stack_cls")
    assert {p.name for p in out.iterdir()} == FILES
    assert result["kind"] == "StackingClassifier" and result["run_id"] == service.run_id
    # an ensemble reference: NAME serves its production version, else its highest (here version 1)
    assert result["ensemble"] == "stack_cls" and result["served"] == "latest" and result["version"] == 1
    doc = _mlmodel(out)
    assert doc["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert [b["run_id"] for b in doc["metadata"]["base_models"]] == [b.run_id for b in service.bases]
    assert [c["name"] for c in json.loads(doc["signature"]["inputs"])] == service.features
    rows = pd.read_csv(games_csv, nrows=200)
    with open(out / "model.pkl", "rb") as fh:
        estimator = pickle.load(fh)
    table = service.predict_table(rows)
    assert (estimator.predict(rows) == table["prediction"].to_numpy()).all()
    np.testing.assert_allclose(
        estimator.predict_proba(rows), table[[c for c in table if c.startswith("proba_")]], atol=1e-9, rtol=0
    )
    by_run = export_mlflow(trained, service.run_id, tmp_path / "by-run")
    assert by_run["ensemble"] == "stack_cls"


def test_a_non_empty_out_is_refused_and_nothing_is_written(settings, trained, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="not empty") as caught:
        export_mlflow(trained, "c_lr", out)
    assert str(out) in caught.value.message
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and _leftovers(tmp_path) == []
    result = CliRunner().invoke(
        cli, ["models", "export-mlflow", "c_lr", "--out", str(out)], obj=AppContext(settings)
    )
    assert result.exit_code == 2 and str(out) in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValidationError, match="is a file"):
        export_mlflow(trained, "c_lr", a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_mlflow(trained, "c_lr", empty)["path"] == str(empty)  # an empty folder is taken
    assert {p.name for p in empty.iterdir()} == FILES


def test_a_bad_reference_is_refused_naming_it(settings, trained, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NotFoundError, match="no_such_model"):
        export_mlflow(trained, "no_such_model", out)
    with pytest.raises(NotFoundError, match="9.9.9"):
        export_mlflow(trained, "c_lr@9.9.9", out)
    assert not out.exists() and _leftovers(tmp_path) == []
    result = CliRunner().invoke(
        cli, ["models", "export-mlflow", "no_such_model", "--out", str(out)], obj=AppContext(settings)
    )
    assert result.exit_code == 2 and "no_such_model" in result.stderr and result.stdout == ""
    assert not out.exists()


def test_a_failure_half_way_leaves_nothing(trained, tmp_path, monkeypatch):
    real, count = mlflow_export._write, []

    def failing(path: Path, payload: bytes) -> None:
        count.append(path.name)
        if len(count) == 3:
            raise OSError(28, "No space left on device")
        real(path, payload)

    monkeypatch.setattr(mlflow_export, "_write", failing)
    with pytest.raises(OSError, match="No space"):
        export_mlflow(trained, "c_lr", tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_cli_export_mlflow_json_and_info_line(settings, trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["models", "export-mlflow", "r_ridge", "--out", str(tmp_path / "j"), "--json"],
        obj=AppContext(settings),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["task"] == "regression" and set(data["files"]) == FILES
    assert _mlmodel(tmp_path / "j")["signature"]["outputs"] is None  # a regressor's output dtype is its own
    result = runner.invoke(
        cli, ["models", "export-mlflow", "stack_cls", "--out", str(tmp_path / "i")], obj=AppContext(settings)
    )
    assert result.exit_code == 0, result.output
    run_id = load_ensemble(trained, "stack_cls").run_id
    assert f"wrote MLflow model {tmp_path / 'i'}" in result.stderr and run_id in result.stderr
    assert "StackingClassifier" in result.stderr


# ---------------------------------------------------------------- with MLflow itself


def mlflow_python() -> str:
    """A Python that imports mlflow: ``MLFLOW_PYTHON``, else the bench virtualenv; else the test skips."""
    candidates = [os.environ["MLFLOW_PYTHON"]] if os.environ.get("MLFLOW_PYTHON") else []
    if BENCH_PYTHON.exists():
        candidates.append(str(BENCH_PYTHON))
    for python in candidates:
        try:
            done = subprocess.run([python, "-c", "import mlflow"], capture_output=True, timeout=120)
        except OSError:  # no such file
            continue
        if done.returncode == 0:
            return python
    pytest.skip(
        "MLflow is not installed: set MLFLOW_PYTHON to a python with mlflow 3.17.2 (see README Benchmarks)"
    )


PREDICT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import mlflow.pyfunc, mlflow.sklearn, pandas as pd
rows = pd.read_csv(sys.argv[1])
out = {}
for folder in sys.argv[2:]:
    model = mlflow.pyfunc.load_model(folder)
    got = {"prediction": model.predict(rows).tolist()}
    estimator = mlflow.sklearn.load_model(folder)
    if hasattr(estimator, "predict_proba"):
        got["proba"] = estimator.predict_proba(rows).tolist()
    out[folder] = got
print(json.dumps(out))
"""


def _service(database, ref: str, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    if ref.startswith("stack"):
        table = load_ensemble(database, ref).predict_table(rows)
        proba = [c for c in table if c.startswith("proba_")]
        return table["prediction"].to_numpy(), table[proba].to_numpy() if proba else None
    model = load(database, ref).model
    return model.predict(rows), model.predict_proba(rows) if model.task == "classification" else None


def _same(got: list, expected: np.ndarray, classification: bool) -> None:
    if classification:
        assert (np.asarray(got) == expected).all()
    else:
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-9, rtol=0)


def test_mlflow_loads_and_serves_what_the_service_predicts(trained, games_csv, tmp_path):
    python = mlflow_python()
    rows = pd.read_csv(games_csv, nrows=200)
    rows_csv = tmp_path / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    refs = {"c_lr": True, "r_ridge": False, "stack_cls": True}
    folders = {ref: export_mlflow(trained, ref, tmp_path / "mlflow" / ref)["path"] for ref in refs}
    script = tmp_path / "predict.py"
    script.write_text(PREDICT)
    done = subprocess.run(
        [python, "-I", str(script), str(rows_csv), *folders.values()],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # outside this project: nothing of it importable
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    for ref, classification in refs.items():
        prediction, proba = _service(trained, ref, rows)
        _same(got[folders[ref]]["prediction"], prediction, classification)
        if proba is not None:
            np.testing.assert_allclose(np.asarray(got[folders[ref]]["proba"]), proba, atol=1e-9, rtol=0)

    # `mlflow models serve` on the ensemble's folder, one POST of dataframe_split rows
    port = free_port()
    serve = ["models", "serve", "-m", folders["stack_cls"], "--env-manager", "local", "-p", str(port)]
    path = f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the venv's uvicorn
    server = subprocess.Popen(
        [python, "-m", "mlflow", *serve, "-h", "127.0.0.1"],
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            if time.monotonic() > deadline:
                pytest.fail("mlflow models serve did not answer /ping within 60 s")
            time.sleep(0.5)
        sample = rows[FEATS].head(50)
        body = json.dumps({"dataframe_split": sample.to_dict(orient="split", index=False)}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            served = json.loads(reply.read())["predictions"]
        prediction, _ = _service(trained, "stack_cls", sample)
        _same(served, prediction, True)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """End the server this test started and its workers (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=20)
