"""One interface for putting a model and the inference function on a device.

A deployer starts a deployment (``deploy``) and reports where it is (``status``). Handles and
statuses are plain data, so they travel through XCom and trigger kwargs unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from deeplens_pipeline import layout
from deeplens_pipeline.deploy.inference_settings import InferenceSettings, check_thing_name
from deeplens_pipeline.naming import client_token

IN_PROGRESS = "InProgress"
BUILDING = "Building"
SUCCESS = "Success"
FAILURE = "Failure"
FINAL_STATES = frozenset({SUCCESS, FAILURE})
STATES = frozenset({IN_PROGRESS, BUILDING, SUCCESS, FAILURE})

METHODS = ("greengrass-v1", "greengrass-v2", "ssh")
DEVICE_ARTIFACTS_DIR = "/opt/awscam/artifacts"
"""Where a DeepLens keeps deployed models: ``mo.optimize`` reads ``<name>-symbol.json`` there."""
_LAMBDA_VERSION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9_-]+:(\d+|[a-zA-Z0-9_-]+)$"
)


def split_s3_uri(uri: str, what: str = "S3 URI") -> tuple[str, str]:
    """``layout.split_s3_uri`` for the URI of one object; the error names the parameter ``what``."""
    try:
        bucket, key = layout.split_s3_uri(uri if isinstance(uri, str) else "")
    except ValueError:
        raise ValueError(f"{what} {uri!r} is not an s3://bucket/key URI") from None
    if not key or key.endswith("/"):
        raise ValueError(f"{what} {uri!r} is not an s3://bucket/key URI of an object")
    return bucket, key


def check_model_archive(uri: str) -> str:
    """Return ``uri`` if it names a model archive Greengrass can unpack (.tar.gz, .tgz or .zip)."""
    _, key = split_s3_uri(uri, "model_s3_uri")
    if not key.endswith((".tar.gz", ".tgz", ".zip")):
        raise ValueError(
            f"model_s3_uri {uri!r} must be the repacked model archive (model.tar.gz): "
            "Greengrass unpacks .tar.gz, .tgz or .zip machine-learning resources"
        )
    return uri


def check_lambda_version_arn(arn: str) -> str:
    """Return ``arn`` if it is a qualified (version or alias) Lambda ARN; Greengrass refuses $LATEST."""
    match = _LAMBDA_VERSION_ARN.match(arn or "")
    if not match or match.group(1) == "$LATEST":
        raise ValueError(
            f"lambda_version_arn {arn!r} must be a published version's ARN "
            "(arn:aws:lambda:<region>:<account>:function:<name>:<version>), not $LATEST"
        )
    return arn


def idempotency_token(run_token: str, step: str, payload: Any = None) -> str:
    """``naming.client_token`` for one create call of one run: same run, step and request, same token.

    Hashing the request too means a changed request never replays a stale answer.
    """
    if not run_token:
        raise ValueError("run_token is empty: idempotency tokens derive from the caller's run token")
    return client_token(f"{step}|{json.dumps(payload, sort_keys=True, default=str)}", run_token)


@dataclass(frozen=True)
class DeploymentRequest:
    """What to deploy where.

    ``run_token`` identifies the pipeline run: retries with the same token re-attach to the
    deployment they started. ``function_s3_uri`` (the function's zip) is needed by the
    Greengrass V2 method only; ``function_package`` (the zip bytes) by the SSH method only.
    """

    thing_name: str
    model_s3_uri: str
    lambda_version_arn: str
    settings: InferenceSettings
    run_token: str
    memory_mb: int = 1536
    timeout_s: int = 25
    function_s3_uri: str | None = None
    function_package: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_thing_name(self.thing_name)
        check_model_archive(self.model_s3_uri)
        check_lambda_version_arn(self.lambda_version_arn)
        if not self.run_token:
            raise ValueError("run_token is empty: it makes retries re-attach instead of deploying twice")
        if not 32 <= int(self.memory_mb) <= 8192:
            raise ValueError(f"memory_mb {self.memory_mb} is outside 32..8192 MB")
        if not 1 <= int(self.timeout_s) <= 900:
            raise ValueError(f"timeout_s {self.timeout_s} is outside 1..900 seconds")
        if self.function_s3_uri is not None:
            split_s3_uri(self.function_s3_uri, "function_s3_uri")

    @property
    def device_settings(self) -> InferenceSettings:
        """The settings as the device gets them: their topic is the one of ``thing_name``."""
        if self.settings.thing_name == self.thing_name:
            return self.settings
        return replace(self.settings, thing_name=self.thing_name)

    @property
    def function_name(self) -> str:
        """The Lambda function's name (from its version ARN)."""
        return self.lambda_version_arn.split(":function:", 1)[1].split(":", 1)[0]

    @property
    def function_version(self) -> str:
        """The Lambda version or alias being deployed."""
        return self.lambda_version_arn.rsplit(":", 1)[1]


@dataclass(frozen=True)
class DeploymentHandle:
    """A started deployment: enough to ask for its status later, from any process."""

    method: str
    deployment_id: str
    target: str
    group_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (XCom, trigger kwargs)."""
        return {
            "method": self.method,
            "deployment_id": self.deployment_id,
            "target": self.target,
            "group_id": self.group_id,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentHandle:
        """Inverse of ``to_dict``."""
        if data.get("method") not in METHODS:
            raise ValueError(
                f"deployment handle has method {data.get('method')!r}, expected one of {METHODS}"
            )
        return cls(
            method=data["method"],
            deployment_id=str(data["deployment_id"]),
            target=str(data["target"]),
            group_id=data.get("group_id"),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class DeploymentStatus:
    """Where a deployment is: ``InProgress``, ``Building``, ``Success`` or ``Failure``.

    On failure, ``error_message`` and ``error_details`` carry what the device or service said.
    """

    state: str
    error_message: str | None = None
    error_details: tuple[dict[str, Any], ...] = ()
    raw_status: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"deployment state {self.state!r} is not one of {sorted(STATES)}")

    @property
    def is_final(self) -> bool:
        """True once the deployment succeeded or failed."""
        return self.state in FINAL_STATES

    def describe(self) -> str:
        """One line for logs and exceptions."""
        text = (
            self.state
            if not self.raw_status or self.raw_status == self.state
            else f"{self.state} ({self.raw_status})"
        )
        if self.error_message:
            text += f": {self.error_message}"
        for detail in self.error_details:
            code = detail.get("DetailedErrorCode") or detail.get("code") or ""
            message = detail.get("DetailedErrorMessage") or detail.get("message") or ""
            if code or message:
                text += f" [{code}] {message}".rstrip()
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (trigger events)."""
        return {
            "state": self.state,
            "error_message": self.error_message,
            "error_details": [dict(detail) for detail in self.error_details],
            "raw_status": self.raw_status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentStatus:
        """Inverse of ``to_dict``."""
        return cls(
            state=data["state"],
            error_message=data.get("error_message"),
            error_details=tuple(dict(detail) for detail in data.get("error_details") or ()),
            raw_status=data.get("raw_status"),
        )


@runtime_checkable
class DeviceDeployer(Protocol):
    """Puts a model and the inference function on a device."""

    method: str

    def deploy(self, request: DeploymentRequest) -> DeploymentHandle:
        """Start (or re-attach to) the deployment of ``request``; return its handle."""
        ...

    def status(self, handle: DeploymentHandle) -> DeploymentStatus:
        """Where the deployment of ``handle`` is now."""
        ...
