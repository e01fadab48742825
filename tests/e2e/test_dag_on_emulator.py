"""The whole DAG, first stage to last, on the embedded emulator: both training branches."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, mode: str) -> dict:
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "demo.py"),
        "--mode",
        mode,
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


def check_summary(summary: dict, mode: str) -> None:
    assert summary["images_processed"] == 16
    assert summary["images_rejected"] == 0
    assert summary["labeling_job"].startswith("deeplens-label-")
    assert sum(summary["labels_total"].values()) > 0
    assert summary["train_count"] > summary["validation_count"] > 0
    assert summary["training_job"].startswith("deeplens-")
    if mode == "tune":
        assert summary["tuning_job"].startswith("deeplens-tune-")
        assert summary["training_job"].startswith(summary["tuning_job"])
    assert 0.0 <= summary["validation_map"] <= 1.0
    assert summary["deploy_model_uri"].endswith("/output/deploy-model.tar.gz")
    assert ":function:deeplens-" in summary["lambda_version_arn"]
    assert summary["deployment_id"]
    assert summary["deployment_status"] == "Success"


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["train", "tune"])
def test_whole_dag(tmp_path, mode, pipeline_calls):
    result = run_demo(tmp_path, mode)
    pipeline_calls.calls.update(result["aws_calls"])  # the IAM policies are checked against these
    skipped = "tune_model" if mode == "train" else "train_model"
    assert result["tasks"][skipped] == "skipped"
    check_summary(result["summary"], mode)
