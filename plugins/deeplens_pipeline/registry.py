"""The model registry: one SageMaker model package group per environment and DAG (no Airflow).

Every evaluated model is registered as a version of the group, with its holdout metrics and what
it was trained for (classes, base network, input size) in the version's customer metadata. The
device runs the newest *Approved* version: :func:`current_model` finds it, and the run compares
against it, warm-starts from it and pre-labels with it.

The group's name derives from the environment and the DAG (as job names do), so two Airflow
environments or two DAGs sharing an account never read each other's approvals.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
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
        raise ValueError(
            "the model package group is named after the environment and the DAG: both are needed"
        )
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
    approval_description: str = ""

    @property
    def classes(self) -> list[str]:
        """The class names the model was trained for, in class-id order ([] if not recorded)."""
        return decode_classes(self.metadata)

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
        approval_description=description.get("ApprovalDescription") or "",
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


# --- registering a version ----------------------------------------------------------------------

META_RUN_TOKEN = "run_token"
META_CLASSES_ENCODED = "classes_b32"
META_AP_PREFIX = "ap."
METADATA_MAX_ENTRIES = 50
METADATA_KEY_MAX = 128
METADATA_VALUE_MAX = 256
APPROVAL_DESCRIPTION_MAX = 1024
CONTENT_TYPE = "image/jpeg"
RESPONSE_TYPE = "application/json"
_SEPARATOR = "/"


def metadata_char_ok(char: str) -> bool:
    """Whether SageMaker's customer metadata pattern ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` admits ``char``."""
    return char in "_.:/=+-@" or unicodedata.category(char)[0] in "LZN"


def _metadata_text(text: str, limit: int) -> str:
    """``text`` with the characters SageMaker refuses in metadata replaced by ``_``, cut to ``limit``."""
    cleaned = "".join(c if metadata_char_ok(c) else "_" for c in text)[:limit]
    return cleaned or "_"


def encode_classes(classes: list[str]) -> dict[str, str]:
    """The class list as metadata entries SageMaker accepts, read back by :attr:`RegisteredModel.classes`.

    Readable (``blue_box/yellow_box``) when every name is made of admitted characters without ``/``
    and the whole fits one value; otherwise base32 of the JSON list, over as many entries as needed.
    """
    readable = _SEPARATOR.join(classes)
    if (
        classes
        and all(
            name and _SEPARATOR not in name and all(metadata_char_ok(c) for c in name) for name in classes
        )
        and len(readable) <= METADATA_VALUE_MAX
    ):
        return {META_CLASSES: readable}
    encoded = base64.b32encode(json.dumps(classes, ensure_ascii=False).encode()).decode()
    chunks = [encoded[i : i + METADATA_VALUE_MAX] for i in range(0, len(encoded), METADATA_VALUE_MAX)]
    return {
        META_CLASSES_ENCODED if i == 0 else f"{META_CLASSES_ENCODED}.{i}": c for i, c in enumerate(chunks)
    }


def decode_classes(metadata: dict[str, str]) -> list[str]:
    """The class list :func:`encode_classes` wrote ([] if none recorded)."""
    if META_CLASSES_ENCODED in metadata:
        parts, i = [metadata[META_CLASSES_ENCODED]], 1
        while f"{META_CLASSES_ENCODED}.{i}" in metadata:
            parts.append(metadata[f"{META_CLASSES_ENCODED}.{i}"])
            i += 1
        return list(json.loads(base64.b32decode("".join(parts)).decode()))
    text = metadata.get(META_CLASSES, "")
    # "," is how versions were described before registering existed (SageMaker refuses it in metadata).
    separator = _SEPARATOR if _SEPARATOR in text or "," not in text else ","
    return [name for name in text.split(separator) if name]


def version_metadata(
    *,
    classes: list[str],
    base_network: str,
    image_shape: int,
    run_id: str,
    run_token: str,
    training_job: str,
    holdout_map: float,
    per_class_ap: dict[str, float | None],
) -> dict[str, str]:
    """The version's customer metadata: what it was trained for and its holdout scores.

    Per-class AP goes in as ``ap.<class id>`` entries while SageMaker's 50 entries allow (the
    whole per-class result is always in the version's ModelMetrics document).
    """
    metadata = {
        **encode_classes(classes),
        META_BASE_NETWORK: _metadata_text(base_network, METADATA_VALUE_MAX),
        META_IMAGE_SHAPE: str(int(image_shape)),
        META_RUN_ID: _metadata_text(run_id, METADATA_VALUE_MAX),
        META_RUN_TOKEN: _metadata_text(run_token, METADATA_VALUE_MAX),
        META_TRAINING_JOB: _metadata_text(training_job, METADATA_VALUE_MAX),
        META_MAP: f"{holdout_map:.6f}",
    }
    for class_id, name in enumerate(classes):
        ap = per_class_ap.get(name)
        if ap is None or len(metadata) >= METADATA_MAX_ENTRIES:
            continue
        metadata[f"{META_AP_PREFIX}{class_id}"] = f"{ap:.6f}"
    if len(metadata) > METADATA_MAX_ENTRIES:
        raise ValueError(
            f"classes: {len(classes)} class names too long to record in the model registry "
            f"({len(metadata)} metadata entries, SageMaker keeps {METADATA_MAX_ENTRIES})"
        )
    return metadata


def client_token(run_token: str) -> str:
    """CreateModelPackage's ClientToken for this run (≤ 36 of ``[a-zA-Z0-9-]``): a retry sends the same."""
    token = re.sub(r"[^a-zA-Z0-9-]", "-", f"deeplens-register-{run_token}")[:36]
    return token


def register_request(
    *,
    group: str,
    image: str,
    model_artifact: str,
    metrics_uri: str,
    metadata: dict[str, str],
    token: str,
    description: str,
) -> dict[str, Any]:
    """CreateModelPackage's request: a version of ``group``, PendingManualApproval until decided."""
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description[:1024],
        "InferenceSpecification": {
            "Containers": [{"Image": image, "ModelDataUrl": model_artifact}],
            "SupportedContentTypes": [CONTENT_TYPE],
            "SupportedResponseMIMETypes": [RESPONSE_TYPE],
        },
        "ModelApprovalStatus": PENDING,
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": RESPONSE_TYPE, "S3Uri": metrics_uri}}
        },
        "CustomerMetadataProperties": metadata,
        "ClientToken": token,
    }


def _missing_group(error: Exception) -> bool:
    response = getattr(error, "response", {}) or {}
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", "")
    return code in ("ValidationException", "ResourceNotFound") and "does not exist" in message


def ensure_group(client: Any, group: str, description: str) -> str:
    """The group's ARN, creating the group if it does not exist yet (safe to call again)."""
    try:
        return client.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    except client.exceptions.ClientError as error:
        if not _missing_group(error):
            raise
    try:
        return client.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription=description[:1024]
        )["ModelPackageGroupArn"]
    except client.exceptions.ClientError as error:  # created meanwhile by another task
        if "already exists" not in str(error):
            raise
        return client.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]


def find_run_version(client: Any, group: str, run_token: str, newest: int = 20) -> RegisteredModel | None:
    """This run's version of ``group`` (by its ``run_token`` metadata) among the ``newest``, or None."""
    try:
        page = client.list_model_packages(
            ModelPackageGroupName=group,
            ModelPackageType="Versioned",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=min(max(newest, 1), 100),
        )
    except client.exceptions.ClientError as error:
        if _missing_group(error):
            return None
        raise
    for summary in page.get("ModelPackageSummaryList") or []:
        version = registered_model(client.describe_model_package(ModelPackageName=summary["ModelPackageArn"]))
        if version.metadata.get(META_RUN_TOKEN) == run_token:
            return version
    return None


# --- the gate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    """Whether the candidate may replace the current model, and why, in words."""

    deploy: bool
    reason: str
    candidate_map: float
    current_map: float | None
    min_map: float
    max_regression: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "deploy": self.deploy,
            "decision": "deploy" if self.deploy else "keep",
            "reason": self.reason,
            "candidate_map": self.candidate_map,
            "current_map": self.current_map,
            "min_map": self.min_map,
            "max_regression": self.max_regression,
        }


def decide_gate(
    candidate_map: float, current_map: float | None, min_map: float, max_regression: float
) -> GateDecision:
    """Deploy only if ``candidate_map`` ≥ ``min_map`` and ≥ ``current_map - max_regression``.

    ``current_map`` None: no current model to compare with (none approved yet, or its classes
    differ), so only ``min_map`` applies.
    """
    args = (candidate_map, current_map, min_map, max_regression)
    if candidate_map < min_map:
        return GateDecision(
            False, f"the new model's holdout mAP {candidate_map:.4f} is below min_map {min_map:.4f}", *args
        )
    if current_map is None:
        return GateDecision(
            True,
            f"the new model's holdout mAP {candidate_map:.4f} reaches min_map {min_map:.4f}; "
            "no current model to compare with",
            *args,
        )
    floor = current_map - max_regression
    if candidate_map < floor:
        return GateDecision(
            False,
            f"the new model's holdout mAP {candidate_map:.4f} is below the current model's "
            f"{current_map:.4f} minus max_regression {max_regression:.4f} (= {floor:.4f})",
            *args,
        )
    return GateDecision(
        True,
        f"the new model's holdout mAP {candidate_map:.4f} reaches min_map {min_map:.4f} and the "
        f"current model's {current_map:.4f} minus max_regression {max_regression:.4f}",
        *args,
    )


def who_changed(description: dict[str, Any]) -> str:
    """Who last changed a version (DescribeModelPackage's LastModifiedBy), in words."""
    user = description.get("LastModifiedBy") or {}
    identity = user.get("IamIdentity") or {}
    return identity.get("Arn") or user.get("UserProfileName") or user.get("UserProfileArn") or "someone"
