"""Uploading a training file into a data root (models/store/uploads.py, POST /api/data/upload, POST
/data/upload) and the feature picker's column list (GET /api/data/columns)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest

import models.store.uploads as uploads
from models.errors import ConflictError, ValidationError
from models.store.datarefs import to_stored
from models.store.uploads import save_upload
from tests.helpers import AUTH, PASSWORD, TOKEN
from web import create_app
from web.testing import csrf_token, login

TEAMS = ("BOS", "LAL", "NYK")
CSV = "elo,team,notes,home_win\n" + "".join(
    f"{1400 + i},{TEAMS[i % 3]},a long free text note about game {i},{i % 2}\n" for i in range(30)
)
TYPES = {"elo": "numeric", "team": "categorical", "notes": "text", "home_win": "numeric"}


def uploads_dir(settings) -> Path:
    return settings.data_dir / "uploads"


def leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def upload_files(client, name: str = "games.csv", content: str | bytes = CSV, **fields):
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        "/api/data/upload",
        data={"file": (io.BytesIO(data), name), **fields},
        content_type="multipart/form-data",
        headers=AUTH,
    )


# --- the core: models/store/uploads.py ---


def test_upload_lands_atomically_in_the_first_root(settings, monkeypatch):
    seen = []
    publish = uploads._publish

    def spy(tmp, dest, replace, shown):  # at the moment of the move: complete temp file beside the target
        seen.append((tmp.parent, tmp.name, tmp.read_text(), dest.exists()))
        publish(tmp, dest, replace, shown)

    monkeypatch.setattr(uploads, "_publish", spy)
    path = save_upload(settings, "games.csv", io.BytesIO(CSV.encode()))
    assert path == uploads_dir(settings) / "games.csv" and path.read_text() == CSV
    assert to_stored(str(path), settings) == "@data/uploads/games.csv"
    [(folder, tmp_name, text, existed)] = seen
    assert folder == uploads_dir(settings) and tmp_name.startswith(".tmp-upload-") and text == CSV
    assert not existed
    assert leftovers(uploads_dir(settings)) == ["games.csv"]  # no temporary file left


def test_upload_into_a_chosen_root_and_an_unknown_root_is_refused(settings, tmp_path):
    settings = settings.with_(data_roots=(*settings.data_roots, ("extra", tmp_path / "extra")))
    path = save_upload(settings, "games.csv", io.BytesIO(CSV.encode()), root="extra")
    assert path == tmp_path / "extra" / "uploads" / "games.csv"
    assert to_stored(str(path), settings) == "@extra/uploads/games.csv"
    with pytest.raises(ValidationError) as exc:
        save_upload(settings, "games.csv", io.BytesIO(CSV.encode()), root="elsewhere")
    assert "'elsewhere' is not one of the data roots" in exc.value.message and "extra=" in exc.value.message


def test_too_large_is_refused_naming_the_limit_and_leaves_nothing(settings):
    small = settings.with_(max_training_csv_bytes=100)
    with pytest.raises(ValidationError) as exc:
        save_upload(small, "games.csv", io.BytesIO(CSV.encode()))
    assert "upload limit of 100 bytes" in exc.value.message and "MAX_TRAINING_CSV_BYTES" in exc.value.message
    assert exc.value.field == "file"
    assert leftovers(uploads_dir(settings)) == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../x.csv", "must be a plain name, without folders"),
        ("sub/x.csv", "must be a plain name, without folders"),
        ("..\\x.csv", "must be a plain name, without folders"),
        (".hidden.csv", "must not start with '.'"),
        ("x.exe", "must end in .csv, .parquet or .pq (its ending is '.exe')"),
        ("x.csv.exe", "must end in .csv, .parquet or .pq"),
        ("", "needs a file name"),
        ("a\x00b.csv", "control characters"),
        ("a;b.csv", "may hold only letters, digits"),
    ],
)
def test_bad_names_are_refused_naming_the_problem(settings, name, problem):
    with pytest.raises(ValidationError) as exc:
        save_upload(settings, name, io.BytesIO(CSV.encode()))
    assert problem in exc.value.message and exc.value.field == "file"
    assert leftovers(uploads_dir(settings)) == []
    assert not (settings.data_dir / "x.csv").exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text"),
        ("empty.csv", b"", "is empty (no header line)"),
        ("ragged.csv", b"a,b\n1,2\n1,2,3,4,5\n", "cannot be read as CSV"),
        ("bad.parquet", b"not parquet at all", "is not a readable Parquet file"),
    ],
)
def test_not_a_csv_is_refused_and_removed(settings, name, content, problem):
    with pytest.raises(ValidationError) as exc:
        save_upload(settings, name, io.BytesIO(content))
    assert problem in exc.value.message and "nothing was stored" in exc.value.message
    assert leftovers(uploads_dir(settings)) == []


def test_existing_file_is_not_overwritten_unless_asked(settings):
    path = save_upload(settings, "games.csv", io.BytesIO(CSV.encode()))
    with pytest.raises(ConflictError) as exc:
        save_upload(settings, "games.csv", io.BytesIO(b"x,y\n1,2\n"))
    assert "@data/uploads/games.csv already exists" in exc.value.message
    assert path.read_text() == CSV and leftovers(uploads_dir(settings)) == ["games.csv"]
    save_upload(settings, "games.csv", io.BytesIO(b"x,y\n1,2\n"), replace=True)
    assert path.read_text() == "x,y\n1,2\n" and leftovers(uploads_dir(settings)) == ["games.csv"]


def test_parquet_upload_is_accepted(settings):
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]}).to_parquet(buffer)
    buffer.seek(0)
    path = save_upload(settings, "small.parquet", buffer)
    assert path.name == "small.parquet" and path.stat().st_size == len(buffer.getvalue())


def test_uploads_folder_linked_out_of_the_root_is_refused(settings):
    outside = Path(tempfile.mkdtemp(prefix="upload-outside-"))
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        uploads_dir(settings).symlink_to(outside, target_is_directory=True)
        with pytest.raises(ValidationError) as exc:
            save_upload(settings, "games.csv", io.BytesIO(CSV.encode()))
        assert "DATA_ROOTS" in exc.value.message and os.listdir(outside) == []
    finally:
        for leftover in outside.iterdir():
            leftover.unlink()
        outside.rmdir()


# --- the API: POST /api/data/upload, GET /api/data/columns ---


def test_api_upload_returns_path_size_and_typed_columns(app, settings):
    client = app.test_client()
    response = upload_files(client)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["path"] == "@data/uploads/games.csv" and body["size"] == len(CSV.encode())
    assert {c["name"]: c["type"] for c in body["columns"]} == TYPES
    assert [c["name"] for c in body["columns"]] == list(TYPES)
    assert body["rows"] == 30 and body["rows_exact"] is True
    assert (uploads_dir(settings) / "games.csv").read_text() == CSV
    listed = client.get(response.headers["Location"], headers=AUTH)
    assert listed.status_code == 200 and listed.get_json()["columns"] == body["columns"]


def test_api_upload_refuses_an_existing_name_unless_replace(app, settings):
    client = app.test_client()
    assert upload_files(client).status_code == 201
    again = upload_files(client, content="x,y\n1,2\n")
    assert again.status_code == 409 and "already exists" in again.get_json()["error"]["message"]
    assert (uploads_dir(settings) / "games.csv").read_text() == CSV
    replaced = upload_files(client, content="x,y\n1,2\n", replace="1")
    assert replaced.status_code == 201 and [c["name"] for c in replaced.get_json()["columns"]] == ["x", "y"]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("../x.csv", CSV, "without folders"),
        (".hidden.csv", CSV, "must not start with '.'"),
        ("x.exe", CSV, "must end in .csv"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_api_upload_refuses_bad_files_naming_the_problem(app, settings, name, content, problem):
    response = upload_files(app.test_client(), name, content)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert problem in error["message"] and error["field"] == "file"
    assert leftovers(uploads_dir(settings)) == []


def test_api_upload_without_a_file_is_400(app):
    response = app.test_client().post(
        "/api/data/upload", data={"other": "x"}, content_type="multipart/form-data", headers=AUTH
    )
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "file"


def test_unauthenticated_upload_is_refused(app, settings):
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.post(
            "/api/data/upload",
            data={"file": (io.BytesIO(CSV.encode()), "games.csv")},
            content_type="multipart/form-data",
            headers=headers,
        )
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    page = client.post(
        "/data/upload", data={"file": (io.BytesIO(CSV.encode()), "games.csv")}, content_type="multipart/form-data"
    )
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert client.get("/api/data/columns?path=@data/uploads/games.csv").status_code == 401
    assert leftovers(uploads_dir(settings)) == []


def test_session_upload_needs_the_csrf_token(page, settings):
    files = {"file": (io.BytesIO(CSV.encode()), "games.csv")}
    refused = page.post("/api/data/upload", data=files, content_type="multipart/form-data")
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "csrf_failed"
    assert leftovers(uploads_dir(settings)) == []
    files = {"file": (io.BytesIO(CSV.encode()), "games.csv")}
    token = csrf_token(page)
    ok = page.post(
        "/api/data/upload", data=files, content_type="multipart/form-data", headers={"X-CSRFToken": token}
    )
    assert ok.status_code == 201 and ok.get_json()["path"] == "@data/uploads/games.csv"


def small_limit_app(settings, database, limit: int):
    return create_app(
        settings.with_(admin_password=PASSWORD, api_token=TOKEN, max_training_csv_bytes=limit), database
    )


def test_api_too_large_is_refused_naming_the_limit_and_leaves_nothing(settings, database):
    client = small_limit_app(settings, database, 1000).test_client()
    over = CSV * 3  # over MAX_TRAINING_CSV_BYTES, within the request's room: refused while it streams
    response = upload_files(client, content=over)
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "upload limit of 1000 bytes" in message and "MAX_TRAINING_CSV_BYTES" in message
    assert leftovers(uploads_dir(settings)) == []
    huge = upload_files(client, content="a,b\n" + "1,2\n" * 40_000)  # past the request limit: 413 first
    assert huge.status_code == 413
    error = huge.get_json()["error"]
    assert error["code"] == "request_entity_too_large" and "1000 bytes" in error["message"]
    assert "MAX_TRAINING_CSV_BYTES" in error["message"]
    assert leftovers(uploads_dir(settings)) == []


def test_page_upload_too_large_is_a_413_page_naming_the_limit(settings, database):
    client = small_limit_app(settings, database, 1000).test_client()
    login(client, PASSWORD)
    response = client.post(
        "/data/upload",
        data={"file": (io.BytesIO(b"a,b\n" + b"1,2\n" * 40_000), "games.csv"), "csrf_token": csrf_token(client)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "upload limit of 1000 bytes" in html and "MAX_TRAINING_CSV_BYTES" in html and "Traceback" not in html
    assert leftovers(uploads_dir(settings)) == []


def test_upload_room_is_only_for_upload_routes(settings, database):
    """A larger upload limit does not raise MAX_CONTENT_LENGTH for the other routes."""
    app = create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN, max_content_length=2000), database)
    client = app.test_client()
    big = upload_files(client, content="a,b\n" + "1,2\n" * 1000)  # 4 KB: over MAX_CONTENT_LENGTH, fine here
    assert big.status_code == 201
    other = client.post("/api/configs", json={"description": "x" * 5000}, headers=AUTH)
    assert other.status_code == 413
    assert (
        "2000 bytes" in other.get_json()["error"]["message"]
        and "MAX_CONTENT_LENGTH" in other.get_json()["error"]["message"]
    )


def test_page_upload_comes_back_to_the_form_with_training_csv_filled(page, settings):
    response = page.post(
        "/data/upload",
        data={
            "file": (io.BytesIO(CSV.encode()), "games.csv"),
            "csrf_token": csrf_token(page),
            "next": "/configs/new?duplicate_of=x",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/configs/new?duplicate_of=x&training_csv=%40data%2Fuploads%2Fgames.csv"
    form = page.get("/configs/new?training_csv=%40data%2Fuploads%2Fgames.csv").get_data(as_text=True)
    assert 'id="training_csv" name="training_csv" value="@data/uploads/games.csv"' in form
    assert "Uploaded @data/uploads/games.csv" in form
    assert 'id="upload-form"' in form and 'id="feature-picker"' in form
    refused = page.post(
        "/data/upload",
        data={"file": (io.BytesIO(CSV.encode()), ".hidden.csv"), "csrf_token": csrf_token(page), "next": "//evil"},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 302 and refused.headers["Location"] == "/configs/new"
    assert "must not start with" in page.get("/configs/new").get_data(as_text=True)


def test_columns_of_a_file_in_a_root(app, games_csv):
    response = app.test_client().get("/api/data/columns", query_string={"path": str(games_csv)}, headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["path"].startswith("@pytest/") and body["rows"] == 1500 and body["rows_exact"]
    types = {c["name"]: c["type"] for c in body["columns"]}
    assert types["home_elo"] == "numeric" and set(types.values()) <= {"numeric", "categorical", "text"}


def test_columns_row_count_of_a_large_csv_is_estimated(app, settings):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "big.csv").write_text("a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(50_000)))
    body = app.test_client().get("/api/data/columns?path=@data/big.csv", headers=AUTH).get_json()
    assert body["rows_exact"] is False and 40_000 < body["rows"] < 60_000


def test_columns_outside_the_roots_is_refused_naming_them(app, settings):
    client = app.test_client()
    for path in ("/etc/passwd", "/nonexistent/x.csv", "../../etc/passwd"):
        response = client.get("/api/data/columns", query_string={"path": path}, headers=AUTH)
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert "DATA_ROOTS" in error["message"] and "pytest=" in error["message"] and error["field"] == "path"
    missing = client.get("/api/data/columns?path=@data/nope.csv", headers=AUTH)
    assert missing.status_code == 404 and "does not exist" in missing.get_json()["error"]["message"]
    assert client.get("/api/data/columns", headers=AUTH).status_code == 422
