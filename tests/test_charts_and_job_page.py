"""Charts that do not mislead (axis start shown and above 0 when values are close, lower-is-better marked,
long labels whole, a regression chart against the predict-the-mean baseline) and a job page with elapsed
time, time left and second-resolution times."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from models.jobs.timing import job_timing
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import reg_config
from web.charts import axis_range, bar_chart
from web.training_view import score_chart


def test_close_values_get_an_axis_that_shows_their_difference():
    assert axis_range([0.665, 0.686], 1.0, zoom=True)[0] > 0.5
    assert axis_range([0.2, 0.9], 1.0, zoom=True) == (0.0, 1.0)
    assert axis_range([0.665, 0.686], 1.0, zoom=False) == (0.0, 1.0)
    svg = str(bar_chart([("stack", 0.686), ("a", 0.665)], max_value=1.0, zoom=True))
    start = float(re.search(r'data-axis-start="([^"]+)"', svg).group(1))
    assert 0.5 < start < 0.665 and f"axis starts at {start:g}, not 0" in svg
    widths = [
        float(w) for w in re.findall(r'rx="2" fill="[^"]+"[^>]*>|width="([\d.]+)" height="18" rx="2"', svg) if w
    ]
    assert widths[0] > 1.5 * widths[1]  # 0.686 vs 0.665: visibly different bars
    assert svg.count('class="chart-axis tick"') == 3


def test_lower_is_better_is_marked_and_long_labels_are_whole():
    long = "home_win_logistic_regression_with_a_really_long_name"
    svg = str(bar_chart([(long, 0.61), ("b", 0.64)], lower_is_better=True, zoom=True))
    assert f">↓ {long}</text>" in svg and "lower is better" in svg and "…" not in svg
    mixed = str(bar_chart([("accuracy", 0.7), ("brier", 0.2)], max_value=1.0, lower_is_better=[False, True]))
    assert ">↓ brier<" in mixed and ">accuracy<" in mixed and "↓ lower is better" in mixed


def test_regression_chart_compares_with_predicting_the_mean(database, games_csv):
    ConfigStore(database).create(reg_config("r", games_csv))
    run = train_config(database, "r")
    chart = score_chart(run)
    labels = [k for k, _ in chart["items"]]
    assert labels == ["rmse", "rmse of predicting the mean", "mae"] and chart["lower"] == [True, True, True]
    m = run["metrics"]
    assert math.isclose(chart["items"][1][1], m["rmse"] / math.sqrt(1 - m["r2"]))
    assert chart["items"][1][1] > chart["items"][0][1]  # the model beats the baseline


def test_job_timing_elapsed_and_eta():
    start = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    running = {"status": "running", "started_at": start, "progress": 0.25}
    timing = job_timing(running, at=start + timedelta(seconds=30))
    assert timing == {"elapsed_s": 30.0, "eta_s": 90.0}
    assert job_timing({**running, "progress": 0.0}, at=start + timedelta(seconds=5))["eta_s"] is None
    done = {
        "status": "succeeded",
        "started_at": start,
        "finished_at": start + timedelta(seconds=12),
        "progress": 1,
    }
    assert job_timing(done) == {"elapsed_s": 12.0, "eta_s": None}


def test_job_page_and_api_show_elapsed_and_seconds(api, page, database, games_csv):
    ConfigStore(database).create(reg_config("r", games_csv))
    job_id = api("POST", "/api/configs/r/train").get_json()["job_id"]
    import time

    for _ in range(300):
        job = api("GET", f"/api/jobs/{job_id}").get_json()
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded" and job["elapsed_s"] >= 0 and job["eta_s"] is None
    html = page.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert re.search(r'id="job-elapsed" data-seconds="[\d.]+">[\d.]+ s<', html)
    assert re.search(r"<dt>Started</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", html)
    steps = html.split('id="job-steps"', 1)[1]
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", steps)
