"""Deploy as a Greengrass V2 component, for devices that run the Greengrass V2 nucleus today.

Greengrass V1 reached its end of support; a device re-provisioned with Greengrass V2 runs the
same inference code as a component: its recipe downloads the repacked model archive (unpacked
into ``/opt/awscam/artifacts`` at install) and the function's zip (unpacked by Greengrass),
sets the inference settings as environment variables and runs the function. Publishing goes
through the nucleus IPC (the function picks it when the nucleus's component environment is set,
although ``greengrasssdk`` is in the zip too), so the recipe grants ``PublishToIoTCore`` on the
function's topic and installs ``awsiotsdk``.

The component version is derived from the recipe's content: the same model, function and
settings give the same version, so a retry finds its version already created. A retry also
re-attaches to the device's current deployment when it deploys that version and has not failed
(``clientToken`` alone would not do: Greengrass V2 remembers it for 8 hours only).

A new component version is ``REQUESTED`` until Greengrass has checked its artifacts (it computes
their digests), then ``DEPLOYABLE`` or ``FAILED``; only a ``DEPLOYABLE`` version can be deployed, so
the deployer waits for it (bounded) and fails with Greengrass's own message otherwise. Deploying to
a thing that no Greengrass V2 nucleus runs as would queue for ever: the deployer refuses it first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import time
from collections.abc import Callable
from typing import Any

from deeplens_pipeline.deploy.base import (
    DEVICE_ARTIFACTS_DIR,
    FAILURE,
    IN_PROGRESS,
    SUCCESS,
    DeploymentHandle,
    DeploymentRequest,
    DeploymentStatus,
    idempotency_token,
    split_s3_uri,
)
from deeplens_pipeline.deploy.inference_settings import infer_topic
from deeplens_pipeline.lambda_package import DEVICE_RUNTIME

logger = logging.getLogger(__name__)

METHOD = "greengrass-v2"
DEFAULT_COMPONENT_PREFIX = "com.deeplens.inference"
AWSIOTSDK_REQUIREMENT = "awsiotsdk>=1.11,<2"
_COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,128}$")
_THING_ARN = re.compile(r"^arn:(aws[a-z-]*):iot:([a-z0-9-]+):(\d{12}):thing/.+$")
DEVICE_PYTHON = DEVICE_RUNTIME  # "python3.7": the interpreter the DeepLens's software provides;
# its plain ``python3`` (Ubuntu 16.04's) is older than the function's code needs.
DEFAULT_COMPONENT_TIMEOUT = 300.0
"""Seconds to wait for a new component version to become DEPLOYABLE (AWS takes seconds)."""

DEVICE_STATE = {
    "SUCCEEDED": SUCCESS,
    "COMPLETED": SUCCESS,
    "FAILED": FAILURE,
    "TIMED_OUT": FAILURE,
    "REJECTED": FAILURE,
    "CANCELED": FAILURE,
    "IN_PROGRESS": IN_PROGRESS,
    "QUEUED": IN_PROGRESS,
}
"""``coreDeviceExecutionStatus`` (ListEffectiveDeployments) to the common states."""


def component_name(function_name: str, prefix: str = DEFAULT_COMPONENT_PREFIX) -> str:
    """The component's name: ``<prefix>.<function name>``."""
    name = f"{prefix}.{function_name}"
    if not _COMPONENT_NAME.match(name):
        raise ValueError(f"component name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return name


def _artifact_file(uri: str) -> str:
    _, key = split_s3_uri(uri)
    return posixpath.basename(key)


def _zip_folder(uri: str) -> str:
    """Greengrass unpacks ``name.zip`` into ``{artifacts:decompressedPath}/name``."""
    name = _artifact_file(uri)
    return name[: -len(".zip")] if name.endswith(".zip") else name


def component_recipe(request: DeploymentRequest, name: str, version: str = "0.0.0") -> dict[str, Any]:
    """The component recipe (``RecipeFormatVersion`` 2020-01-25) running the inference function."""
    if not request.function_s3_uri:
        raise ValueError(
            "greengrass-v2 needs function_s3_uri: the function's zip on S3 is a component artifact"
        )
    if not request.function_s3_uri.endswith(".zip"):
        raise ValueError(f"function_s3_uri {request.function_s3_uri!r} must be the function's .zip package")
    topic = infer_topic(request.thing_name)
    settings = request.device_settings
    model_file = _artifact_file(request.model_s3_uri)
    if model_file.endswith(".zip"):
        unpack_model = f"unzip -o {{artifacts:path}}/{model_file} -d {DEVICE_ARTIFACTS_DIR}"
    else:
        unpack_model = f"tar -xzf {{artifacts:path}}/{model_file} -C {DEVICE_ARTIFACTS_DIR}"
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": (
            f"DeepLens object detection: model {settings.model_name}, "
            f"function {request.function_name}:{request.function_version}"
        ),
        "ComponentPublisher": "deeplens-object-detection pipeline",
        "ComponentConfiguration": {
            "DefaultConfiguration": {
                "accessControl": {
                    "aws.greengrass.ipc.mqttproxy": {
                        f"{name}:publish:1": {
                            "policyDescription": "Publish detections and errors on the device's infer topic.",
                            "operations": ["aws.greengrass#PublishToIoTCore"],
                            "resources": [topic],
                        }
                    }
                }
            }
        },
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {
                    "Setenv": settings.environment(),
                    "Install": {
                        "Script": (
                            f"mkdir -p {DEVICE_ARTIFACTS_DIR} && {unpack_model} && "
                            f"{DEVICE_PYTHON} -m pip install --user '{AWSIOTSDK_REQUIREMENT}'"
                        ),
                        "RequiresPrivilege": True,
                    },
                    "Run": {
                        "Script": (
                            f"{DEVICE_PYTHON} -u {{artifacts:decompressedPath}}/"
                            f"{_zip_folder(request.function_s3_uri)}/deeplens_inference.py"
                        ),
                        "RequiresPrivilege": True,
                    },
                },
                "Artifacts": [
                    {"Uri": request.model_s3_uri, "Unarchive": "NONE"},
                    {"Uri": request.function_s3_uri, "Unarchive": "ZIP"},
                ],
            }
        ],
    }


class ComponentNotDeployable(RuntimeError):
    """Greengrass did not make the component version DEPLOYABLE (FAILED, or not within the wait)."""


def component_version_arn(thing_arn: str, name: str, version: str) -> str:
    """The component version's ARN, in the partition, Region and account of the target thing."""
    match = _THING_ARN.match(thing_arn)
    if not match:
        raise ValueError(f"{thing_arn!r} is not an IoT thing ARN")
    partition, region, account = match.groups()
    return f"arn:{partition}:greengrass:{region}:{account}:components:{name}:versions:{version}"


def content_version(recipe: dict[str, Any]) -> str:
    """A semantic version derived from the recipe's content (its own version field excluded)."""
    body = json.dumps({**recipe, "ComponentVersion": None}, sort_keys=True)
    return f"1.0.{int(hashlib.sha256(body.encode()).hexdigest()[:7], 16)}"


class GreengrassV2Deployer:
    """Deploys a component to the core device ``thing_name`` (boto3 ``greengrassv2`` and ``iot`` clients)."""

    method = METHOD

    def __init__(
        self,
        client: Any,
        iot_client: Any,
        *,
        component_prefix: str = DEFAULT_COMPONENT_PREFIX,
        component_timeout: float = DEFAULT_COMPONENT_TIMEOUT,
        component_poll_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.iot = iot_client
        self.component_prefix = component_prefix
        self.component_timeout = component_timeout
        self.component_poll_interval = component_poll_interval
        self._sleep = sleep

    def thing_arn(self, thing_name: str) -> str:
        """The core device's thing ARN (the deployment target)."""
        try:
            arn = self.iot.describe_thing(thingName=thing_name)["thingArn"]
        except self.iot.exceptions.ResourceNotFoundException as exc:
            raise LookupError(
                f"IoT thing {thing_name!r} does not exist: is the device a Greengrass V2 core?"
            ) from exc
        if not _THING_ARN.match(arn):
            raise ValueError(f"describe_thing returned {arn!r}, not an IoT thing ARN")
        return arn

    def check_core_device(self, thing_name: str) -> None:
        """LookupError unless a Greengrass V2 nucleus runs as ``thing_name`` (GetCoreDevice)."""
        try:
            self.client.get_core_device(coreDeviceThingName=thing_name)
        except self.client.exceptions.ResourceNotFoundException as exc:
            raise LookupError(
                f"{thing_name!r} is not a Greengrass V2 core device: no Greengrass V2 nucleus has "
                "connected as this thing (install it on the DeepLens, or deploy with greengrass-v1 or ssh)"
            ) from exc

    def wait_deployable(self, arn: str) -> None:
        """Wait until the component version ``arn`` is DEPLOYABLE (DescribeComponent).

        ComponentNotDeployable when Greengrass marks it FAILED (with its message and the errors per
        artifact) or DEPRECATED, or when it is still being checked after ``component_timeout`` seconds.
        """
        deadline = time.monotonic() + self.component_timeout
        while True:
            status = self.client.describe_component(arn=arn).get("status") or {}
            state = status.get("componentState", "")
            if state == "DEPLOYABLE":
                return
            if state in ("FAILED", "DEPRECATED"):
                message = status.get("message") or "no message"
                errors = "; ".join(f"{uri}: {error}" for uri, error in (status.get("errors") or {}).items())
                raise ComponentNotDeployable(
                    f"Greengrass marked component version {arn} {state}: {message}"
                    + (f" ({errors})" if errors else "")
                    + ". Greengrass never checks a version again: fix the artifact, then delete this "
                    f"version (aws greengrassv2 delete-component --arn {arn}) or deploy a changed model "
                    "or function (a new version)"
                )
            if time.monotonic() >= deadline:
                raise ComponentNotDeployable(
                    f"component version {arn} is still {state or 'unknown'} after "
                    f"{self.component_timeout:g}s: Greengrass has not finished checking its artifacts"
                )
            logger.info("Component version %s is %s; waiting for DEPLOYABLE", arn, state)
            self._sleep(self.component_poll_interval)

    def build_requests(
        self, request: DeploymentRequest, target_arn: str, replacing: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The CreateComponentVersion and CreateDeployment requests for ``request``.

        ``replacing`` (the target's current deployment id) is part of the deployment's client
        token, so a deployment made over another one is never answered with an older one.
        """
        name = component_name(request.function_name, self.component_prefix)
        recipe = component_recipe(request, name)
        version = content_version(recipe)
        recipe["ComponentVersion"] = version
        inline = json.dumps(recipe, sort_keys=True).encode("utf-8")
        create_component = {
            "inlineRecipe": inline,
            "clientToken": idempotency_token(request.run_token, "component", [name, version]),
        }
        create_deployment = {
            "targetArn": target_arn,
            "deploymentName": f"deeplens-{request.function_name}-{request.run_token}"[:256],
            "components": {name: {"componentVersion": version}},
            "deploymentPolicies": {
                "failureHandlingPolicy": "ROLLBACK",
                "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
            },
            "clientToken": idempotency_token(
                request.run_token, "deployment", [target_arn, name, version, replacing]
            ),
        }
        return create_component, create_deployment

    def current_deployment(self, target_arn: str) -> dict[str, Any] | None:
        """The target's latest deployment revision (GetDeployment: status and components), or None."""
        listed = self.client.list_deployments(targetArn=target_arn, historyFilter="LATEST_ONLY")
        latest = next((d for d in listed.get("deployments", []) if d.get("isLatestForTarget")), None)
        return self.client.get_deployment(deploymentId=latest["deploymentId"]) if latest else None

    def deploy(self, request: DeploymentRequest) -> DeploymentHandle:
        """Re-attach to the device's deployment of this component version, else create both.

        The component version is created if new and awaited until DEPLOYABLE, then a deployment of
        it to the device is created.
        """
        target_arn = self.thing_arn(request.thing_name)
        self.check_core_device(request.thing_name)
        current = self.current_deployment(target_arn)
        create_component, create_deployment = self.build_requests(
            request, target_arn, current["deploymentId"] if current else None
        )
        ((name, spec),) = create_deployment["components"].items()
        details = {"component": name, "component_version": spec["componentVersion"], "target_arn": target_arn}
        if current and _component_versions(current) == {name: spec["componentVersion"]}:
            handle = DeploymentHandle(METHOD, current["deploymentId"], request.thing_name, None, details)
            status = self.status(handle)
            if status.state != FAILURE:
                logger.info("Re-attaching to deployment %s (%s)", handle.deployment_id, status.describe())
                return handle
        arn = component_version_arn(target_arn, name, spec["componentVersion"])
        try:
            created = self.client.create_component_version(**create_component)
            arn = created.get("arn") or arn
            logger.info("Created component %s %s (%s)", name, spec["componentVersion"], created.get("status"))
        except self.client.exceptions.ConflictException:
            logger.info(
                "Component %s %s already exists (same content); reusing it", name, spec["componentVersion"]
            )
        self.wait_deployable(arn)
        started = self.client.create_deployment(**create_deployment)
        logger.info("Started Greengrass V2 deployment %s to %s", started["deploymentId"], target_arn)
        return DeploymentHandle(METHOD, started["deploymentId"], request.thing_name, None, details)

    def status(self, handle: DeploymentHandle) -> DeploymentStatus:
        """The device's execution status of the deployment (ListEffectiveDeployments), else the job's."""
        pages = self.client.get_paginator("list_effective_deployments").paginate(
            coreDeviceThingName=handle.target
        )
        try:
            effective_deployments = [e for page in pages for e in page.get("effectiveDeployments", [])]
        except self.client.exceptions.ResourceNotFoundException as exc:
            raise LookupError(f"{handle.target!r} is not a Greengrass V2 core device") from exc
        for effective in effective_deployments:
            if effective.get("deploymentId") != handle.deployment_id:
                continue
            raw = effective.get("coreDeviceExecutionStatus", "")
            details = effective.get("statusDetails") or {}
            error_details = tuple(
                {"code": key, "message": " > ".join(details[key])}
                for key in ("errorStack", "errorTypes")
                if details.get(key)
            )
            return DeploymentStatus(
                state=DEVICE_STATE.get(raw, IN_PROGRESS),
                error_message=effective.get("reason") or None,
                error_details=error_details,
                raw_status=raw,
            )
        deployment = self.client.get_deployment(deploymentId=handle.deployment_id)
        raw = deployment.get("deploymentStatus", "")
        if raw in ("FAILED", "CANCELED"):
            return DeploymentStatus(FAILURE, f"deployment {handle.deployment_id} is {raw}", raw_status=raw)
        return DeploymentStatus(IN_PROGRESS, raw_status=raw)


def _component_versions(deployment: dict[str, Any]) -> dict[str, str | None]:
    """``{component: version}`` of a GetDeployment answer."""
    return {
        name: (spec or {}).get("componentVersion")
        for name, spec in (deployment.get("components") or {}).items()
    }
