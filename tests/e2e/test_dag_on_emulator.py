"""The whole DAG, first stage to last, on the embedded emulator: both training branches."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, mode: str, labeling: str) -> dict:
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "demo.py"),
        "--mode",
        mode,
        "--labeling",
        labeling,
        "--training",
        "fast",
        "--images",
        "16",
        "--work-dir",
        str(tmp_path / "demo"),
        "--json",
        str(out),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert out.exists(), completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["state"] == "success", (result["tasks"], completed.stdout[-6000:], completed.stderr[-6000:])
    return result


def check_summary(summary: dict, mode: str, labeling: str) -> None:
    assert summary["images_processed"] == 16
    assert summary["images_rejected"] == 0
    assert summary["labeling_backend"] == labeling
    assert summary["labeling_job"].startswith("deeplens-label-")
    if labeling == "label-studio":
        assert "/projects/" in summary["labeling_project"]
        assert sum(summary["labels_this_job"].values()) > 0
    assert sum(summary["labels_total"].values()) > 0
    assert summary["train_count"] > summary["validation_count"] > 0
    assert summary["training_job"].startswith("deeplens-")
    if mode == "tune":
        assert summary["tuning_job"].startswith("deeplens-tune-")
        assert summary["training_job"].startswith(summary["tuning_job"])
    assert 0.0 <= summary["validation_map"] <= 1.0
    # Both models scored on the holdout (none approved yet on a fresh emulator), the gate, the registry.
    assert 0.0 <= summary["holdout_map_new"] <= 1.0 and summary["holdout_map_current"] is None
    assert summary["gate_decision"] == "deploy the new model", summary["gate_reason"]
    assert ":model-package/deeplens-models-" in summary["registry_version_arn"]
    assert summary["registry_status"] == "Approved"
    assert summary["deployed_version_arn"] == summary["registry_version_arn"]
    assert summary["deploy_model_uri"].endswith("/output/deploy-model.tar.gz")
    assert ":function:deeplens-" in summary["lambda_version_arn"]
    assert summary["deployment_id"]
    assert summary["deployment_status"] == "Success"
    assert summary["cost_usd"] > 0  # the jobs' billable time, priced by the public price list


@pytest.mark.e2e
# The default (Label Studio, a real server) on the training branch; Ground Truth on the tuning one.
@pytest.mark.parametrize(("mode", "labeling"), [("train", "label-studio"), ("tune", "ground-truth")])
def test_whole_dag(tmp_path, mode, labeling, pipeline_calls):
    result = run_demo(tmp_path, mode, labeling)
    pipeline_calls.calls.update(result["aws_calls"])  # the IAM policies are checked against these
    skipped = "tune_model" if mode == "train" else "train_model"
    assert result["tasks"][skipped] == "skipped"
    assert result["tasks"]["reject_model"] == "skipped" and result["tasks"]["approve_model"] == "success"
    check_summary(result["summary"], mode, labeling)
