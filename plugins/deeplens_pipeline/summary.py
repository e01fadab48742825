"""The run summary: the figures a user wants at the end of a run (no Airflow)."""

from __future__ import annotations

from typing import Any

from deeplens_pipeline.label_studio import prelabel_summary


def build_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Pick the headline figures out of the stages' results (missing stages give None)."""
    images = results.get("images") or {}
    labeling = results.get("labeling") or {}
    split = results.get("split") or {}
    model = results.get("model") or {}
    repack = results.get("repack") or {}
    function = results.get("function") or {}
    deployment = results.get("deployment") or {}
    candidate = results.get("evaluation_candidate") or {}
    current = results.get("evaluation_current") or {}
    registered = results.get("registry") or {}
    approval = results.get("approval") or {}
    rejection = results.get("rejection") or {}
    gate = results.get("gate") or approval.get("gate") or rejection.get("gate") or {}
    report = results.get("evaluation_report") or {}
    return {
        "images_processed": images.get("processed"),
        "images_unchanged": images.get("unchanged"),
        "images_rejected": images.get("rejected"),
        "images_duplicates": images.get("duplicates"),
        "labeling_backend": labeling.get("backend"),
        "labeling_project": labeling.get("project_url") or labeling.get("project"),
        "labeling_job": labeling.get("job_name"),
        "labels_this_job": (labeling.get("job") or {}).get("boxes"),
        "labels_total": (labeling.get("total") or {}).get("boxes"),
        "labels_left_out": {k: len(v) for k, v in (labeling.get("left_out") or {}).items()} or None,
        "prelabel_boxes": prelabel_summary(labeling.get("prelabel")),
        "train_count": split.get("train_count"),
        "validation_count": split.get("validation_count"),
        "tuning_job": model.get("tuning_job"),
        "training_job": model.get("training_job"),
        "validation_map": model.get("validation_map"),
        "billable_seconds": model.get("billable_seconds"),
        "spot_saving_percent": model.get("spot_saving_percent"),
        "warm_start": _warm_start(model.get("warm_start")),
        **_gate_summary(gate, candidate, current, registered, approval, rejection),
        "evaluation_report": report.get("report_uri"),
        "deploy_model_uri": repack.get("deploy_model_uri"),
        "model_name": repack.get("model_name"),
        "lambda_version_arn": function.get("version_arn"),
        "deployment_id": deployment.get("deployment_id"),
        "deployment_status": deployment.get("status"),
    }


def _warm_start(warm: dict[str, Any] | None) -> str | None:
    """Whether training started from the current model (and which version), or why not."""
    if not warm:
        return None
    if warm.get("warm_started"):
        version, artifact = warm.get("version"), warm.get("model_artifact")
        return f"from registry version {version} ({artifact})" if version else f"from {artifact}"
    return f"no: {warm.get('reason')}"


def _gate_summary(
    gate: dict[str, Any],
    candidate: dict[str, Any],
    current: dict[str, Any],
    registered: dict[str, Any],
    approval: dict[str, Any],
    rejection: dict[str, Any],
) -> dict[str, Any]:
    """The gate's decision and why, both holdout mAPs, and the registry version's ARN and status."""
    decision, reason = None, gate.get("reason")
    if gate:
        decision = "deploy the new model" if gate.get("deploy") else "kept the current model"
    if approval.get("rejected_by"):
        decision = "kept the current model"
        reason = (
            f"version rejected by {approval['rejected_by']}: "
            f"{approval.get('approval_description') or 'no reason given'}"
        )
    status = rejection.get("status") or approval.get("status") or registered.get("status")
    if approval.get("run_version_arn") and approval.get("arn") != approval.get("run_version_arn"):
        status = approval.get("status")  # the newest Approved version is another run's
    return {
        "gate_decision": decision,
        "gate_reason": reason,
        "holdout_map_new": candidate.get("map"),
        "holdout_map_current": current.get("map"),
        "current_model_note": current.get("reason") if current.get("no_current_model") else None,
        "registry_version_arn": registered.get("arn"),
        "registry_status": status,
        "approved_by": approval.get("approved_by"),
        "deployed_version_arn": approval.get("arn") if not approval.get("rejected_by") else None,
    }


_LABELS = {
    "images_processed": "Images processed",
    "images_unchanged": "Images unchanged (already in S3)",
    "images_rejected": "Images rejected",
    "images_duplicates": "Duplicate images",
    "labeling_backend": "Labelling backend",
    "labeling_project": "Label Studio project",
    "labeling_job": "Labelling job (or batch)",
    "labels_this_job": "Boxes from this job",
    "labels_total": "Boxes in all labels",
    "labels_left_out": "Images left out of the labels",
    "prelabel_boxes": "Pre-drawn boxes (current model)",
    "train_count": "Train images",
    "validation_count": "Validation images",
    "tuning_job": "Tuning job",
    "training_job": "Training job",
    "validation_map": "Validation mAP",
    "billable_seconds": "Billable training seconds",
    "spot_saving_percent": "Spot saving (%)",
    "warm_start": "Warm start",
    "holdout_map_new": "Holdout mAP, new model",
    "holdout_map_current": "Holdout mAP, current model",
    "current_model_note": "Current model",
    "gate_decision": "Gate decision",
    "gate_reason": "Gate reason",
    "registry_version_arn": "Registry version",
    "registry_status": "Registry status",
    "approved_by": "Approved by",
    "deployed_version_arn": "Deployed version",
    "evaluation_report": "Evaluation report",
    "deploy_model_uri": "Repacked model",
    "model_name": "Model name on the device",
    "lambda_version_arn": "Lambda version",
    "deployment_id": "Deployment id",
    "deployment_status": "Deployment status",
    "cost_usd": "AWS cost of the run (USD, estimate)",
}


_GATE_KEYS = (
    "holdout_map_new",
    "holdout_map_current",
    "current_model_note",
    "gate_decision",
    "gate_reason",
    "registry_version_arn",
    "registry_status",
    "approved_by",
    "deployed_version_arn",
    "evaluation_report",
)
"""Left out of the table when empty (a run stopped for too few photos never reached the gate)."""


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned ``label : value`` lines."""
    width = max(len(label) for label in _LABELS.values())
    lines = []
    for key, label in _LABELS.items():
        value = summary.get(key)
        if key in ("validation_map", "holdout_map_new", "holdout_map_current") and isinstance(value, float):
            value = f"{value:.4f}"
        if key == "labeling_job" and value is None and "labeling_job" in summary:
            value = "(none needed: every image was labelled)"
        if (
            key
            in (
                "tuning_job",
                "labeling_project",
                "labels_left_out",
                "prelabel_boxes",
                "billable_seconds",
                "spot_saving_percent",
                "warm_start",
                "cost_usd",
                *_GATE_KEYS,
            )
            and value is None
        ):
            continue
        lines.append(f"{label:<{width}} : {value}")
    return "\n".join(lines)
