"""The model registry: one SageMaker model package group per environment and DAG (no Airflow).

Every evaluated model is registered as a version of the group, with its holdout metrics and what
it was trained for (classes, base network, input size) in the version's customer metadata. The
device runs the newest *Approved* version: :func:`current_model` finds it, and the run compares
against it, warm-starts from it and pre-labels with it.

The group's name derives from the environment and the DAG (as job names do), so two Airflow
environments or two DAGs sharing an account never read each other's approvals.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from deeplens_pipeline.naming import NAME_PREFIX

GROUP_NAME_MAX = 63
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
APPROVED = "Approved"
REJECTED = "Rejected"
PENDING = "PendingManualApproval"
APPROVAL_STATUSES = (APPROVED, REJECTED, PENDING)

# Customer metadata keys of a version (SageMaker: string keys ≤ 128 and values ≤ 256 characters).
META_CLASSES = "classes"
META_BASE_NETWORK = "base_network"
META_IMAGE_SHAPE = "image_shape"
META_MAP = "holdout_map"
META_RUN_ID = "run_id"
META_TRAINING_JOB = "training_job"


def group_name(environment: str, dag_id: str) -> str:
    """``deeplens-models-<token>``: the group of this environment's ``dag_id`` (≤ 63 characters)."""
    if not environment or not dag_id:
        raise ValueError("the model package group is named after the environment and the DAG: both are needed")
    token = hashlib.sha256(f"{environment}\n{dag_id}".encode()).hexdigest()[:12]
    name = f"{NAME_PREFIX}-models-{token}"
    if not _GROUP_NAME.match(name) or len(name) > GROUP_NAME_MAX:  # pragma: no cover - by construction
        raise ValueError(f"built an invalid model package group name {name!r}")
    return name


@dataclass(frozen=True)
class RegisteredModel:
    """One version of the group: where its training artefact is and what it was trained for."""

    arn: str
    version: int
    status: str
    model_artifact: str
    image: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """The class names the model was trained for, in class-id order ([] if not recorded)."""
        text = self.metadata.get(META_CLASSES, "")
        return [name for name in text.split(",") if name]

    @property
    def holdout_map(self) -> float | None:
        """The holdout mAP recorded when it was registered, if any."""
        value = self.metadata.get(META_MAP)
        return float(value) if value not in (None, "") else None


def registered_model(description: dict[str, Any]) -> RegisteredModel:
    """A :class:`RegisteredModel` from DescribeModelPackage's answer."""
    containers = description.get("InferenceSpecification", {}).get("Containers") or [{}]
    return RegisteredModel(
        arn=description["ModelPackageArn"],
        version=int(description.get("ModelPackageVersion") or 0),
        status=description.get("ModelApprovalStatus") or PENDING,
        model_artifact=containers[0].get("ModelDataUrl", ""),
        image=containers[0].get("Image", ""),
        metadata=dict(description.get("CustomerMetadataProperties") or {}),
    )


def current_model(client: Any, group: str) -> RegisteredModel | None:
    """The newest Approved version of ``group`` (what the device should run), or None.

    ``client`` is a boto3 SageMaker client. A group that does not exist yet has no current model.
    """
    try:
        page = client.list_model_packages(
            ModelPackageGroupName=group,
            ModelApprovalStatus=APPROVED,
            ModelPackageType="Versioned",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )
    except client.exceptions.ResourceNotFound:
        return None
    except client.exceptions.ClientError as error:  # some answer ValidationException for a missing group
        if error.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return None
        raise
    summaries = page.get("ModelPackageSummaryList") or []
    if not summaries:
        return None
    return registered_model(client.describe_model_package(ModelPackageName=summaries[0]["ModelPackageArn"]))
