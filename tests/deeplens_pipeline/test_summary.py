"""The run summary's gate lines: the decision and why, both mAPs, the registry version and its status."""

from __future__ import annotations

from deeplens_pipeline.summary import build_summary, format_summary

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/deeplens-models-abc/3"
GATE_NO = {"deploy": False, "reason": "the new model's holdout mAP 0.1000 is below min_map 0.5000"}
GATE_YES = {"deploy": True, "reason": "the new model's holdout mAP 0.6000 reaches min_map 0.0000"}


def test_the_gate_kept_the_current_model() -> None:
    summary = build_summary(
        {
            "evaluation_candidate": {"map": 0.1},
            "evaluation_current": {"map": 0.55},
            "registry": {"arn": ARN, "status": "PendingManualApproval"},
            "rejection": {"kept_current_model": True, "status": "Rejected", "gate": GATE_NO},
        }
    )
    assert summary["gate_decision"] == "kept the current model"
    assert summary["gate_reason"] == GATE_NO["reason"]
    assert (summary["holdout_map_new"], summary["holdout_map_current"]) == (0.1, 0.55)
    assert (summary["registry_version_arn"], summary["registry_status"]) == (ARN, "Rejected")
    assert summary["deployed_version_arn"] is None
    text = format_summary(summary)
    assert "Gate decision" in text and "kept the current model" in text and "0.5500" in text


def test_approved_and_deployed_with_no_current_model() -> None:
    summary = build_summary(
        {
            "evaluation_candidate": {"map": 0.6},
            "evaluation_current": {"map": None, "no_current_model": True, "reason": "no current model: none"},
            "registry": {"arn": ARN, "status": "PendingManualApproval"},
            "approval": {"arn": ARN, "status": "Approved", "approved_by": "ana", "gate": GATE_YES},
        }
    )
    assert summary["gate_decision"] == "deploy the new model"
    assert summary["registry_status"] == "Approved" and summary["deployed_version_arn"] == ARN
    assert summary["current_model_note"] == "no current model: none"
    assert "Holdout mAP, current model" not in format_summary(summary)


def test_a_person_rejected_the_version() -> None:
    summary = build_summary(
        {
            "registry": {"arn": ARN, "status": "PendingManualApproval"},
            "approval": {
                "arn": ARN,
                "status": "Rejected",
                "rejected_by": "arn:aws:iam::123456789012:user/ana",
                "approval_description": "boxes drift",
                "gate": GATE_YES,
            },
        }
    )
    assert summary["gate_decision"] == "kept the current model"
    assert summary["gate_reason"] == "version rejected by arn:aws:iam::123456789012:user/ana: boxes drift"
    assert summary["registry_status"] == "Rejected" and summary["deployed_version_arn"] is None


def test_a_run_stopped_before_the_gate_shows_no_gate_lines() -> None:
    text = format_summary(build_summary({"images": {"processed": 3}}))
    assert "Gate" not in text and "Registry" not in text
