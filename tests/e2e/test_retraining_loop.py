"""The retraining loop under Airflow's own scheduler and triggerer: photos in, the gate, the device.

``scripts/retraining_loop.py``: the device's model (the sample model, 300 px) is version 1 of the
registry, Approved; 40 new photos are uploaded to the notified prefix and nobody triggers anything.

- ``better``: the run labels them in Label Studio with version 1's boxes pre-drawn, warm-starts from
  version 1, scores both models on the holdout, passes the gate, waits in the triggerer
  (``require_approval``) until a person approves version 2, and deploys it.
- ``worse``: no warm start, an untrained network (the emulator's ``fast`` training): the gate keeps
  version 1, version 2 is Rejected with the reason, and the device gets no deployment.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "retraining_loop.py"


def run_loop(tmp_path: Path, candidate: str, labeling: str, *extra: str) -> dict:
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(SCRIPT),
        *("--candidate", candidate, "--labeling", labeling, "--photos", "40", *extra),
        *("--work-dir", str(tmp_path / "loop"), "--json", str(out)),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=2400, cwd=ROOT)
    assert out.exists(), completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["state"] == "success", (result, completed.stdout[-6000:], completed.stderr[-4000:])
    print(f"{candidate}: loop {result['loop_seconds']} s, wall {result['wall_seconds']} s")
    return result


def check_common(result: dict) -> dict:
    run = result["run"]
    assert run["run_type"] == "asset_triggered", run  # the photos started it
    assert run["images_processed"] == 40
    tasks = run["tasks"]
    for task in ("label_images", "train_model", "evaluate_candidate", "evaluate_current", "register_model"):
        assert tasks[task] == "success", tasks
    assert tasks["evaluation_report"] == "success", tasks
    assert {t: n for t, n in run["tries"].items() if n > 1} == {}, run["tries"]
    summary = run["summary"]
    # Both models were scored on the same holdout by batch transform jobs.
    assert 0.0 <= summary["holdout_map_new"] <= 1.0 and 0.0 <= summary["holdout_map_current"] <= 1.0
    assert summary["cost_usd"] > 0
    reports = result["report_files"]
    assert any(key.endswith("/index.html") for key in reports), reports
    assert any(key.endswith("/pr_curves.png") for key in reports), reports
    assert any(key.endswith("/contact_current.jpg") for key in reports), reports
    versions = result["registry"]
    assert [v["version"] for v in versions] == [1, 2], versions
    return summary


@pytest.mark.e2e
def test_new_photos_retrain_and_the_device_gets_the_better_model(tmp_path):
    result = run_loop(tmp_path, "better", "label-studio", "--require-approval")
    summary = check_common(result)
    tasks = result["run"]["tasks"]
    assert result["gate"]["deploy"] is True, result["gate"]
    assert tasks["approve_model"] == "success" and tasks["reject_model"] == "skipped", tasks
    # require_approval: the task waited in the triggerer until a person approved the version.
    assert result["person_approved"]["seen_waiting"] and result["person_approved"]["arn"], result
    approval = result["approval"]
    assert approval["run_version_arn"] == result["person_approved"]["arn"], approval
    assert approval["approval_description"] == "checked the report" and approval["approved_by"], approval
    assert tasks["deploy_to_device"] == "success", tasks
    assert summary["warm_start"].startswith("from registry version 1"), summary["warm_start"]
    assert "kept" in (summary["prelabel_boxes"] or ""), summary  # annotators corrected version 1's boxes
    v1, v2 = result["registry"]
    assert v1["status"] == "Approved" and v2["status"] == "Approved", result["registry"]
    assert v2["holdout_map"] >= result["gate"]["min_map"]
    # The device got a new deployment: version 2's model.
    assert len(result["deployments_after"]) == len(result["deployments_before"]) + 1
    assert summary["deployment_status"] == "Success"
    assert v2["model_artifact"].rsplit("/output/", 1)[0] in summary["deploy_model_uri"], (v2, summary)


@pytest.mark.e2e
def test_a_worse_model_is_kept_off_the_device(tmp_path):
    result = run_loop(tmp_path, "worse", "ground-truth")
    summary = check_common(result)
    tasks = result["run"]["tasks"]
    gate = result["gate"]
    assert gate["deploy"] is False, gate
    assert gate["candidate_map"] < gate["current_map"] - gate["max_regression"], gate
    assert tasks["reject_model"] == "success" and tasks["approve_model"] == "skipped", tasks
    for task in ("repack_model", "publish_lambda", "deploy_to_device"):
        assert tasks[task] == "skipped", tasks
    assert summary["warm_start"].startswith("no"), summary["warm_start"]
    v1, v2 = result["registry"]
    assert v1["status"] == "Approved" and v2["status"] == "Rejected", result["registry"]
    assert result["deployments_after"] == result["deployments_before"]  # the device keeps version 1
