"""The "Evaluation report" button on the report task, in Airflow 3.3.1's UI in a real browser.

A local Airflow (API server and scheduler, LocalExecutor) runs a one-task DAG with
``EvaluationReportOperator`` on answers staged in the emulator; then the REST API's extra links of
the task instance name the report, headless Chromium (Playwright, Debian's chromium) shows the
button on the task's page with that URL, and following it opens the report. Screenshots go to
build/report-link/. Skipped without Chromium or Playwright on a developer's machine; fails in CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import boto3
import pytest

from emulator.local_airflow import LocalAirflow, free_port
from tests.conftest import PIPELINE_ACCESS_KEY
from tests.deeplens_pipeline.operators.test_report import BUCKET, CLASSES, DAG_FILE, _stage

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "build" / "report-link"
DAG_ID = "report_link_test"
TASK_ID = "evaluation_report"
sys.path.insert(0, str(ROOT / "scripts"))
from trigger_form_check import CHROMIUM_FLAGS, find_chromium  # noqa: E402


def _missing() -> str | None:
    if find_chromium() is None:
        return "no Chromium at /usr/bin/chromium (apt-get install -y chromium, or set $CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make env: requirements/airflow-dev.txt)"
    return None


@pytest.mark.e2e
def test_the_report_link_shows_on_the_task(tmp_path, emulator) -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must be able to open the Airflow UI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    staged = _stage(s3, "ui-probe")
    staged["gate"] = {"decision": "keep", "reason": "candidate mAP below the current model's"}
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "report_link_test.py").write_text(DAG_FILE % json.dumps(staged))
    artefacts = tmp_path / "report-link"
    stack = LocalAirflow(tmp_path / "home", artefacts / "logs", free_port(), paused_at_creation=False)
    stack.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    stack.env["AIRFLOW_CONN_AWS_DEEPLENS"] = json.dumps(
        {
            "conn_type": "aws",
            "login": PIPELINE_ACCESS_KEY,
            "password": "testing",
            "extra": {"endpoint_url": emulator.url, "region_name": "us-east-1"},
        }
    )
    try:
        stack.run("db", "migrate")
        stack.spawn_service("api-server")
        stack.run("dags", "reserialize")
        stack.spawn_service("scheduler")
        stack.wait_for_dag(300, dag_id=DAG_ID)
        run = stack.api_ok(
            "POST",
            f"/dags/{DAG_ID}/dagRuns",
            {"logical_date": None, "conf": {"bucket": BUCKET, "classes": CLASSES}},
        )
        run_id = run["dag_run_id"]

        def finished() -> str | None:
            state = stack.api_ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        assert stack.wait_for("the run to finish", finished, 300) == "success", f"logs in {artefacts}"
        links = stack.api_ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}/links")
        url = links["extra_links"]["Evaluation report"]
        assert url.startswith(f"{emulator.url}/{BUCKET}/reports/"), links

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=find_chromium(), headless=True, args=CHROMIUM_FLAGS
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            try:
                page.goto(f"{stack.url}/dags/{DAG_ID}/runs/{run_id}/tasks/{TASK_ID}")
                # Airflow 3.3's task instance page lists the extra links on its Details tab.
                page.get_by_text("Details", exact=True).click()
                button = page.get_by_role("link", name="Evaluation report")
                button.wait_for()
                page.screenshot(path=str(artefacts / "task-page.png"))
                assert button.get_attribute("href") == url
                page.goto(url)
                page.get_by_text("Gate: Kept the current model").wait_for()
                page.screenshot(path=str(artefacts / "report.png"), full_page=True)
            except Exception:
                page.screenshot(path=str(artefacts / "failure.png"))
                raise
            finally:
                browser.close()
    finally:
        stack.stop()
        shutil.rmtree(KEPT, ignore_errors=True)
        shutil.copytree(artefacts, KEPT, dirs_exist_ok=True)
