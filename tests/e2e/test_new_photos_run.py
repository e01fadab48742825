"""New photos start a run by themselves, under Airflow's own scheduler and triggerer (not dag.test()).

``scripts/local_airflow.py new-photos``: the setup command makes the queue, its policy and the
bucket notification in the emulator; Airflow starts with ``DEEPLENS_NEW_PHOTOS_QUEUE_URL`` (the DAG
is scheduled on the asset the SQS watcher updates) and ``DEEPLENS_RUN_DEFAULTS`` (the Params such a
run gets); nobody triggers a run. Photos uploaded with boto3 start one asset-triggered run, which
succeeds; a burst uploaded at once starts one run that takes every photo of the burst.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local_airflow.py"
PHOTOS, BURST = 10, 10


@pytest.mark.e2e
def test_new_photos_start_one_run_each_by_themselves(tmp_path):
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "new-photos",
        *("--photos", str(PHOTOS), "--burst", str(BURST), "--training", "fast"),
        *("--work-dir", str(tmp_path / "local-airflow"), "--json", str(out)),
    ]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    seconds = time.monotonic() - started
    assert out.exists(), completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["state"] == "success", (result, completed.stdout[-6000:], completed.stderr[-4000:])

    for phase, photos in (("first", PHOTOS), ("burst", BURST)):
        runs = result["phases"][phase]["runs"]
        first = runs[0]
        assert first["run_type"] == "asset_triggered", first  # nobody triggered it
        assert first["state"] == "success", (phase, first["tasks"], result["logs"])
        assert first["images_processed"] == photos, (phase, first["summary"])  # the whole burst, one run
        assert (
            first["tasks"]["label_images"] == "success" and first["tasks"]["keep_current_model"] == "skipped"
        )
        assert first["tasks"]["train_model"] == "success"  # trained on them (deployed if the gate passes)
        assert {t: n for t, n in first["tries"].items() if n > 1} == {}, first["tries"]
        assert first["asset_events"] and all(
            e["asset"] == "deeplens_new_photos" for e in first["asset_events"]
        )
        # The events' messages: one per photo of the phase (and only photo events: s3:TestEvent is not one).
        assert sum(e["messages"] for e in first["asset_events"]) <= photos
        # A later poke of the same burst may queue one more run; it finds no new photo and trains nothing.
        for extra in runs[1:]:
            assert extra["run_type"] == "asset_triggered" and extra["state"] == "success", extra
            assert extra["decision"]["go_on"] is False and extra["decision"]["new_photos"] == 0, extra
            assert extra["tasks"]["keep_current_model"] == "success", extra["tasks"]
            assert extra["tasks"]["train_model"] == "skipped", extra["tasks"]
    burst_runs = result["phases"]["burst"]["runs"]
    assert len(burst_runs) == 1, f"the burst started {len(burst_runs)} runs: {burst_runs}"
    messages = sum(
        e["messages"] for p in result["phases"].values() for r in p["runs"] for e in r["asset_events"]
    )
    assert messages == PHOTOS + BURST  # every photo event consumed once, none lost
    assert result["queue"] == {"ApproximateNumberOfMessages": 0, "ApproximateNumberOfMessagesNotVisible": 0}
    assert result["queued_asset_events"] == []  # no run pending
    assert result["watcher_trigger"], "the triggerer's log does not show the SQS trigger"
    assert all(r["run_type"] == "asset_triggered" for r in result["all_runs"]), result["all_runs"]
    print(f"new photos: {seconds:.0f} s in all; phases: {json.dumps(result['phases'], default=str)[:2000]}")
