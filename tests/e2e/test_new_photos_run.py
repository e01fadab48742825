"""New photos start a run by themselves, under Airflow's own scheduler and triggerer (not dag.test()).

``scripts/local_airflow.py new-photos``: the setup command makes the queue, its policy and the
bucket notification in the emulator; Airflow starts with ``DEEPLENS_NEW_PHOTOS_QUEUE_URL`` (the DAG
is scheduled on the asset the SQS watcher updates) and ``DEEPLENS_RUN_DEFAULTS`` (the Params such a
run gets); nobody triggers a run. Photos uploaded with boto3 start one asset-triggered run, which
succeeds; with fewer than ``min_new_photos`` it keeps the current model. A burst uploaded at once
starts one run that takes every photo of the burst and, the photos of the first upload not
yet labelled, goes on with both: photos count towards ``min_new_photos`` until a run labels
them. Photos uploaded while that run goes on start the next run, which takes them.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local_airflow.py"
PHOTOS, BURST, MIN_NEW_PHOTOS = 5, 10, 8  # the first upload alone is too few; with the burst, enough
DURING = 3  # uploaded while the burst's run goes on: the next run prepares them (too few to train)


@pytest.mark.e2e
def test_new_photos_start_one_run_each_by_themselves(tmp_path):
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "new-photos",
        *("--photos", str(PHOTOS), "--burst", str(BURST), "--during", str(DURING)),
        *("--min-new-photos", str(MIN_NEW_PHOTOS)),
        *("--training", "fast"),
        *("--work-dir", str(tmp_path / "local-airflow"), "--json", str(out)),
    ]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    seconds = time.monotonic() - started
    assert out.exists(), completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["state"] == "success", (result, completed.stdout[-6000:], completed.stderr[-4000:])

    phases = (("first", PHOTOS, PHOTOS), ("burst", BURST, PHOTOS + BURST), ("during", DURING, DURING))
    for phase, photos, waiting in phases:
        runs = result["phases"][phase]["runs"]
        first = runs[0]
        assert first["run_type"] == "asset_triggered", first  # nobody triggered it
        assert first["state"] == "success", (phase, first["tasks"], result["logs"])
        assert first["images_processed"] == photos, (phase, first["summary"])  # the whole upload, one run
        decision = first["decision"]
        assert (decision["new_photos"], decision["prepared_by_this_run"]) == (waiting, photos), decision
        assert {t: n for t, n in first["tries"].items() if n > 1} == {}, first["tries"]
        assert first["asset_events"] and all(
            e["asset"] == "deeplens_new_photos" for e in first["asset_events"]
        )
        # The events' messages: one per photo of the phase (and only photo events: s3:TestEvent is not one).
        if phase != "during":  # the run after the burst's may also have the burst's last events
            assert sum(e["messages"] for e in first["asset_events"]) <= photos
        # A later poke of the same upload may queue one more run; it finds no more photos.
        for extra in runs[1:]:
            assert extra["run_type"] == "asset_triggered" and extra["state"] == "success", extra
            assert extra["decision"]["go_on"] is False and extra["decision"]["prepared_by_this_run"] == 0
            assert extra["tasks"]["keep_current_model"] == "success", extra["tasks"]
            assert extra["tasks"]["train_model"] == "skipped", extra["tasks"]

    # Too few: the first upload's run kept the current model, training nothing.
    kept = result["phases"]["first"]["runs"][0]
    assert kept["decision"]["go_on"] is False and "fewer than min_new_photos=8" in kept["decision"]["reason"]
    assert kept["tasks"]["keep_current_model"] == "success"
    assert kept["tasks"]["label_images"] == kept["tasks"]["train_model"] == "skipped", kept["tasks"]
    # Enough with the photos still waiting: the burst's run labelled and trained on both uploads.
    went_on = result["phases"]["burst"]["runs"][0]
    assert went_on["decision"]["go_on"] is True, went_on["decision"]
    assert went_on["tasks"]["label_images"] == "success"
    assert went_on["tasks"]["keep_current_model"] == "skipped"
    assert went_on["tasks"]["train_model"] == "success"  # trained (deployed if the gate passes)
    split = went_on["split"]  # every labelled photo of both uploads, those without boxes left out
    assert split["train_count"] + split["validation_count"] + split["dropped_empty"] == PHOTOS + BURST, split
    # Photos uploaded during a run: the next run, started by their events, prepared them.
    after = result["phases"]["during"]["runs"][0]
    assert after["decision"]["go_on"] is False and after["tasks"]["keep_current_model"] == "success"
    # Every run is one of these (a burst's late event would have made a run of its own after the
    # burst's; here it would join the run the photos uploaded during the burst's run start).
    recorded = sum(len(p["runs"]) for p in result["phases"].values())
    assert len(result["all_runs"]) == recorded, result["all_runs"]
    assert len(result["phases"]["during"]["runs"]) == 1, result["phases"]["during"]["runs"]
    messages = sum(
        e["messages"] for p in result["phases"].values() for r in p["runs"] for e in r["asset_events"]
    )
    assert messages == PHOTOS + BURST + DURING  # every photo event consumed once, none lost
    assert result["queue"] == {"ApproximateNumberOfMessages": 0, "ApproximateNumberOfMessagesNotVisible": 0}
    assert result["queued_asset_events"] == []  # no run pending
    assert result["watcher_trigger"], "the triggerer's log does not show the SQS trigger"
    assert all(r["run_type"] == "asset_triggered" for r in result["all_runs"]), result["all_runs"]
    print(f"new photos: {seconds:.0f} s in all; phases: {json.dumps(result['phases'], default=str)[:2000]}")
