"""The run summary: the figures a user wants at the end of a run (no Airflow)."""

from __future__ import annotations

from typing import Any


def build_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Pick the headline figures out of the stages' results (missing stages give None)."""
    images = results.get("images") or {}
    labeling = results.get("labeling") or {}
    split = results.get("split") or {}
    model = results.get("model") or {}
    repack = results.get("repack") or {}
    function = results.get("function") or {}
    deployment = results.get("deployment") or {}
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
        "train_count": split.get("train_count"),
        "validation_count": split.get("validation_count"),
        "tuning_job": model.get("tuning_job"),
        "training_job": model.get("training_job"),
        "validation_map": model.get("validation_map"),
        "billable_seconds": model.get("billable_seconds"),
        "spot_saving_percent": model.get("spot_saving_percent"),
        "deploy_model_uri": repack.get("deploy_model_uri"),
        "model_name": repack.get("model_name"),
        "lambda_version_arn": function.get("version_arn"),
        "deployment_id": deployment.get("deployment_id"),
        "deployment_status": deployment.get("status"),
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
    "train_count": "Train images",
    "validation_count": "Validation images",
    "tuning_job": "Tuning job",
    "training_job": "Training job",
    "validation_map": "Validation mAP",
    "billable_seconds": "Billable training seconds",
    "spot_saving_percent": "Spot saving (%)",
    "deploy_model_uri": "Repacked model",
    "model_name": "Model name on the device",
    "lambda_version_arn": "Lambda version",
    "deployment_id": "Deployment id",
    "deployment_status": "Deployment status",
}


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as aligned ``label : value`` lines."""
    width = max(len(label) for label in _LABELS.values())
    lines = []
    for key, label in _LABELS.items():
        value = summary.get(key)
        if key == "validation_map" and isinstance(value, float):
            value = f"{value:.4f}"
        if key == "labeling_job" and value is None and "labeling_job" in summary:
            value = "(none needed: every image was labelled)"
        if (
            key
            in (
                "tuning_job",
                "labeling_project",
                "labels_left_out",
                "billable_seconds",
                "spot_saving_percent",
            )
            and value is None
        ):
            continue
        lines.append(f"{label:<{width}} : {value}")
    return "\n".join(lines)
