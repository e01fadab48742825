"""The DAG in a local Airflow 3.3.1 (scripts/local_airflow.py): its own api-server, dag-processor,
scheduler and triggerer processes, LocalExecutor tasks, the REST API, against the emulator.

The run must succeed with no task retried, and each deferrable task (labelling, training,
deployment) must have been deferred and resumed through the triggerer process: its trigger log
(written by that triggerer job, beside the task's log) shows the trigger started, fired its event
and completed, and the task resumed in the same try.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local_airflow.py"
DEFERRABLE = ("label_images", "train_model", "deploy_to_device")


@pytest.mark.e2e
def test_dag_runs_in_a_local_airflow(tmp_path):
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "run",
        "--training",
        "fast",
        "--images",
        "16",
        "--labeling",
        "ground-truth",
        "--work-dir",
        str(tmp_path / "local-airflow"),
        "--json",
        str(out),
    ]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    seconds = time.monotonic() - started
    assert out.exists(), completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["state"] == "success", (result, completed.stdout[-6000:], completed.stderr[-4000:])

    tasks = result["tasks"]
    assert tasks["tune_model"] == "skipped"
    assert {name: state for name, state in tasks.items() if state not in ("success", "skipped")} == {}
    assert any(name.startswith("images.preprocess_upload[") for name in tasks)  # mapped over shards
    retried = {name: tries for name, tries in result["tries"].items() if tries > 1}
    assert retried == {}, f"tasks retried: {retried}; logs in {result['logs']}"

    triggerer = result["triggerer"]
    # These at least (the evaluation's transform jobs defer too); every deferral is checked.
    assert set(DEFERRABLE) <= set(triggerer), triggerer
    for task in triggerer:
        record = triggerer[task]
        assert record["triggerer_job"] in result["triggerer_jobs"], (task, record, result["triggerer_jobs"])
        assert record["started"].startswith(f"deeplens_object_detection/{result['run_id']}/{task}/-1/1 "), (
            record
        )
        assert record.get("completed"), record
        assert "'status': 'success'" in record["event"].lower(), record

    summary = result["summary"]
    assert summary["images_processed"] == 16
    assert summary["labeling_backend"] == "ground-truth"
    assert summary["training_job"].startswith("deeplens-train-")
    assert summary["deployment_status"] == "Success"
    print(f"local Airflow run: {result['run_seconds']:.0f} s of DAG run, {seconds:.0f} s in all")
