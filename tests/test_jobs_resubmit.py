"""A failed job (e.g. one that lost its worker or scheduler) is submitted again in one click, from its page
or the API; only failed training and ensemble jobs can be, and the answer says why not otherwise."""

from __future__ import annotations

from models import jobs
from models.store import jobs as job_store
from models.store.configs import ConfigStore
from models.training.service import submit_training
from tests.helpers import cls_config, poll


def _failed_training(database, games_csv):
    ConfigStore(database).create(cls_config("again", games_csv))
    runner = jobs.InProcessRunner(1)
    try:
        job, _ = submit_training(database, "again", runner=runner)
        jobs.cancel(database, job["_id"])
    finally:
        runner.shutdown(wait=True)
    return job


def test_a_failed_training_is_submitted_again_from_its_page(page, database, games_csv):
    failed = _failed_training(database, games_csv)
    shown = page.get(f"/jobs/{failed['_id']}").get_data(as_text=True)
    assert 'id="resubmit-job-button"' in shown
    answer = page.post(f"/jobs/{failed['_id']}/resubmit", data={"csrf_token": _csrf(page, failed)})
    assert answer.status_code == 302
    new_id = answer.headers["Location"].rsplit("/", 1)[-1]
    assert new_id != str(failed["_id"])
    done = poll(lambda: jobs.is_finished(d := jobs.get_job(database, new_id)) and d, timeout=120)
    assert done["status"] == "succeeded" and done["params"]["config"] == "again"
    assert ConfigStore(database).get("again")["run_id"] == done["result"]["run_id"]


def test_the_api_resubmits_only_failed_jobs(api, database, games_csv):
    failed = _failed_training(database, games_csv)
    assert api("POST", f"/api/jobs/{failed['_id']}/resubmit", auth=False).status_code == 401
    answer = api("POST", f"/api/jobs/{failed['_id']}/resubmit")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    new_id = answer.get_json()["id"]
    done = poll(lambda: jobs.is_finished(d := jobs.get_job(database, new_id)) and d, timeout=120)
    assert done["status"] == "succeeded"
    refused = api("POST", f"/api/jobs/{new_id}/resubmit")
    assert refused.status_code == 409
    assert "only a failed job can be resubmitted" in refused.get_json()["error"]["message"]
    other, _ = job_store.insert_job(database, "export", "export:x")
    job_store.finish(database, other["_id"], error={"code": "x", "message": "y"}, from_status=("queued",))
    refused = api("POST", f"/api/jobs/{other['_id']}/resubmit")
    assert refused.status_code == 422 and "cannot be resubmitted" in refused.get_json()["error"]["message"]


def _csrf(page, job) -> str:
    import re

    html = page.get(f"/jobs/{job['_id']}").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
