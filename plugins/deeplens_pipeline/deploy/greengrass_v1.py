"""Deploy to a DeepLens the classic way: a new version of its Greengrass V1 group, then a deployment.

This is what the DeepLens console did for a project (seed step 7): the device is the IoT thing
``deeplens_<id>``, the core of a Greengrass V1 group. The new group version keeps the group's
core, devices, loggers and connectors, and replaces its function, resource and subscription
definitions with the inference function (a published Lambda version, long-lived), the model
(an S3 machine-learning resource unpacked in ``/opt/awscam/artifacts``) and the function's
topic to the cloud.

The DeepLens's core runs the function as Python 3.7 (``DEVICE_RUNTIME``), but Lambda no longer
creates python3.7 functions: the function is created with a newer runtime, and its Greengrass
configuration carries ``FunctionRuntimeOverride: python3.7`` whenever the published version's
runtime (read from Lambda) is not the device's.

Retries are safe: definitions whose content already sits in the group's latest version are
reused, the group's newest deployment is re-attached when it deploys that version and has not
failed, and every create call carries an ``AmznClientToken`` derived from the caller's run token
and from the state it builds on (so a re-run after another deployment deploys again).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deeplens_pipeline.deploy.base import (
    DEVICE_ARTIFACTS_DIR,
    FAILURE,
    IN_PROGRESS,
    STATES,
    DeploymentHandle,
    DeploymentRequest,
    DeploymentStatus,
    idempotency_token,
    split_s3_uri,
)
from deeplens_pipeline.deploy.inference_settings import infer_topic
from deeplens_pipeline.lambda_package import DEVICE_RUNTIME

logger = logging.getLogger(__name__)

METHOD = "greengrass-v1"
MODEL_BUCKET_PREFIX = "deeplens"
_DEFINITION_ARN = re.compile(
    r"/definition/(?P<kind>cores|devices|functions|resources|subscriptions|loggers|connectors)"
    r"/(?P<id>[^/]+)/versions/(?P<version>[^/]+)$"
)
_GROUP_VERSION_ARN = re.compile(r"/groups/(?P<group>[^/]+)/versions/(?P<version>[^/]+)$")
_RESOURCE_ID = re.compile(r"[^a-zA-Z0-9:_-]+")
KEPT_DEFINITIONS = (
    "CoreDefinitionVersionArn",
    "DeviceDefinitionVersionArn",
    "LoggerDefinitionVersionArn",
    "ConnectorDefinitionVersionArn",
)
_API_NAMES = {"functions": "Function", "resources": "Resource", "subscriptions": "Subscription"}
"""Definition kinds this deployer replaces -> their stem in the API (``CreateFunctionDefinition``...)."""


class GroupNotFoundError(LookupError):
    """No (or more than one) Greengrass V1 group has the device as its core."""


@dataclass(frozen=True)
class DeviceAccess:
    """Local resources the function may use on the device, besides the model.

    Defaults follow a DeepLens: the host ``/tmp`` (the ``results.mjpeg`` FIFO must be visible to
    ``mplayer`` outside the function's container), the awscam video output read-only and the
    GPU render node the optimised model runs on.
    """

    volumes: tuple[tuple[str, str, str], ...] = (
        ("/tmp", "/tmp", "rw"),
        ("/opt/awscam/out", "/opt/awscam/out", "ro"),
    )
    devices: tuple[tuple[str, str], ...] = (("/dev/dri/renderD128", "rw"),)
    access_sysfs: bool = True

    def __post_init__(self) -> None:
        for source, destination, permission in self.volumes:
            if not source.startswith("/") or not destination.startswith("/"):
                raise ValueError(f"volume {source} -> {destination}: paths must be absolute")
            if (
                source == "/sys"
                or source.startswith(("/sys/", "/dev/", "/var/"))
                or source in ("/dev", "/var")
            ):
                raise ValueError(f"volume {source}: Greengrass refuses volumes under /sys, /dev or /var")
            _check_permission(permission, f"volume {source}")
        for path, permission in self.devices:
            if not path.startswith("/dev/"):
                raise ValueError(f"device {path}: device resources must be under /dev")
            _check_permission(permission, f"device {path}")


def _check_permission(permission: str, what: str) -> None:
    if permission not in ("ro", "rw"):
        raise ValueError(f"{what}: permission must be 'ro' or 'rw', got {permission!r}")


def resource_id(kind: str, path: str) -> str:
    """A group-unique resource id for a path, e.g. ``deeplens-volume-tmp``."""
    slug = _RESOURCE_ID.sub("-", path).strip("-") or "root"
    return f"deeplens-{kind}-{slug}"[:128]


MODEL_RESOURCE_ID = "deeplens-model"


def resource_definition(model_s3_uri: str, access: DeviceAccess) -> dict[str, Any]:
    """``ResourceDefinitionVersion``: the model archive, then the local volumes and devices."""
    resources: list[dict[str, Any]] = [
        {
            "Id": MODEL_RESOURCE_ID,
            "Name": "deeplens-model",
            "ResourceDataContainer": {
                "S3MachineLearningModelResourceData": {
                    "S3Uri": model_s3_uri,
                    "DestinationPath": DEVICE_ARTIFACTS_DIR,
                }
            },
        }
    ]
    for source, destination, _ in access.volumes:
        resources.append(
            {
                "Id": resource_id("volume", source),
                "Name": resource_id("volume", source),
                "ResourceDataContainer": {
                    "LocalVolumeResourceData": {
                        "SourcePath": source,
                        "DestinationPath": destination,
                        "GroupOwnerSetting": {"AutoAddGroupOwner": True},
                    }
                },
            }
        )
    for path, _ in access.devices:
        resources.append(
            {
                "Id": resource_id("device", path),
                "Name": resource_id("device", path),
                "ResourceDataContainer": {
                    "LocalDeviceResourceData": {
                        "SourcePath": path,
                        "GroupOwnerSetting": {"AutoAddGroupOwner": True},
                    }
                },
            }
        )
    return {"Resources": resources}


def runtime_override(function_runtime: str | None, device_runtime: str = DEVICE_RUNTIME) -> str | None:
    """``FunctionRuntimeOverride`` for a Lambda version created with ``function_runtime``.

    ``device_runtime`` (what the core runs the function with) unless the version already has it;
    an unknown runtime (None) gets the override too: the core runs ``device_runtime`` regardless.
    """
    return None if function_runtime == device_runtime else device_runtime


def function_definition(
    request: DeploymentRequest, access: DeviceAccess, runtime: str | None = None
) -> dict[str, Any]:
    """``FunctionDefinitionVersion``: the Lambda version, pinned, with its settings and resources.

    ``runtime`` becomes the function's ``FunctionRuntimeOverride`` (see ``runtime_override``).
    """
    policies = [{"ResourceId": MODEL_RESOURCE_ID, "Permission": "rw"}]
    policies += [
        {"ResourceId": resource_id("volume", source), "Permission": perm}
        for source, _, perm in access.volumes
    ]
    policies += [
        {"ResourceId": resource_id("device", path), "Permission": perm} for path, perm in access.devices
    ]
    configuration: dict[str, Any] = {
        "EncodingType": "json",
        "Environment": {
            "AccessSysfs": access.access_sysfs,
            "ResourceAccessPolicies": policies,
            "Variables": request.device_settings.environment(),
        },
        "MemorySize": int(request.memory_mb) * 1024,  # Greengrass counts in KB
        "Pinned": True,  # long-lived: the loop starts when the core starts
        "Timeout": int(request.timeout_s),
    }
    if runtime:
        configuration["FunctionRuntimeOverride"] = runtime
    function_id = _RESOURCE_ID.sub("-", f"{request.function_name}-{request.function_version}")[:128]
    return {
        "Functions": [
            {
                "Id": function_id,
                "FunctionArn": request.lambda_version_arn,
                "FunctionConfiguration": configuration,
            }
        ]
    }


def subscription_definition(lambda_version_arn: str, topic: str) -> dict[str, Any]:
    """``SubscriptionDefinitionVersion``: the function's messages on ``topic`` go to the cloud."""
    return {
        "Subscriptions": [
            {
                "Id": "deeplens-inference-to-cloud",
                "Source": lambda_version_arn,
                "Subject": topic,
                "Target": "cloud",
            }
        ]
    }


def parse_definition_arn(arn: str) -> tuple[str, str, str]:
    """``(kind, definition id, version id)`` of a definition version ARN."""
    match = _DEFINITION_ARN.search(arn or "")
    if not match:
        raise ValueError(f"{arn!r} is not a Greengrass definition version ARN")
    return match["kind"], match["id"], match["version"]


@dataclass(frozen=True)
class DeviceGroup:
    """A Greengrass V1 group whose core is the device, with its latest version's definition."""

    group_id: str
    name: str
    version_id: str
    version_arn: str
    definition: dict[str, str]


class GreengrassV1Deployer:
    """Deploys through Greengrass V1 (boto3 ``greengrass``, ``iot`` and ``lambda`` clients passed in).

    ``group_id`` pins the group instead of searching for the one whose core is the device.
    ``lambda_client`` reads the published version's runtime, to decide on the runtime override
    (without it the override is always written); ``device_runtime`` is what the core runs.
    """

    method = METHOD

    def __init__(
        self,
        greengrass_client: Any,
        iot_client: Any = None,
        *,
        lambda_client: Any = None,
        group_id: str | None = None,
        access: DeviceAccess | None = None,
        device_runtime: str = DEVICE_RUNTIME,
    ) -> None:
        self.greengrass = greengrass_client
        self.iot = iot_client
        self.lambda_client = lambda_client
        self.group_id = group_id
        self.access = access or DeviceAccess()
        self.device_runtime = device_runtime

    def function_runtime(self, lambda_version_arn: str) -> str | None:
        """The Lambda runtime of the published version; None without a Lambda client or version.

        A missing version is left for the deployment to report (the device names it).
        """
        if self.lambda_client is None:
            return None
        try:
            found = self.lambda_client.get_function_configuration(FunctionName=lambda_version_arn)
        except self.lambda_client.exceptions.ResourceNotFoundException:
            logger.warning("Lambda version %s does not exist: the deployment will fail", lambda_version_arn)
            return None
        return found.get("Runtime")

    # -- finding the device's group -------------------------------------------------------------

    def thing_arn(self, thing_name: str) -> str | None:
        """The IoT thing's ARN (None without an IoT client); a clear error if the thing is unknown."""
        if self.iot is None:
            return None
        try:
            return self.iot.describe_thing(thingName=thing_name)["thingArn"]
        except self.iot.exceptions.ResourceNotFoundException as exc:
            raise GroupNotFoundError(
                f"IoT thing {thing_name!r} does not exist in this account and region: "
                "is the DeepLens registered (thing 'deeplens_<id>')?"
            ) from exc

    def _groups(self) -> Iterator[dict[str, Any]]:
        for page in self.greengrass.get_paginator("list_groups").paginate():
            yield from page.get("Groups", [])

    def _core_things(self, definition: dict[str, str]) -> list[str]:
        core_arn = definition.get("CoreDefinitionVersionArn")
        if not core_arn:
            return []
        _, core_id, core_version = parse_definition_arn(core_arn)
        core = self.greengrass.get_core_definition_version(
            CoreDefinitionId=core_id, CoreDefinitionVersionId=core_version
        )
        return [entry.get("ThingArn", "") for entry in core.get("Definition", {}).get("Cores", [])]

    def _latest(self, group: dict[str, Any]) -> DeviceGroup | None:
        version = group.get("LatestVersion")
        if not version:
            return None
        found = self.greengrass.get_group_version(GroupId=group["Id"], GroupVersionId=version)
        return DeviceGroup(
            group_id=group["Id"],
            name=group.get("Name", ""),
            version_id=version,
            version_arn=found.get("Arn") or group.get("LatestVersionArn", ""),
            definition=dict(found.get("Definition") or {}),
        )

    def find_group(self, thing_name: str) -> DeviceGroup:
        """The group whose core definition's core is ``thing_name``; a clear error listing what exists."""
        thing_arn = self.thing_arn(thing_name)

        def is_device(arn: str) -> bool:
            return arn == thing_arn if thing_arn else arn.endswith(f":thing/{thing_name}")

        matches: list[DeviceGroup] = []
        seen: list[str] = []
        groups = [self.greengrass.get_group(GroupId=self.group_id)] if self.group_id else self._groups()
        for group in groups:
            latest = self._latest(group)
            cores = self._core_things(latest.definition) if latest else []
            seen.append(f"{group.get('Name', '?')} ({group['Id']}): cores {cores or 'none'}")
            if latest and any(is_device(arn) for arn in cores):
                matches.append(latest)
        if len(matches) == 1:
            return matches[0]
        what = f"thing {thing_name!r}" + (f" ({thing_arn})" if thing_arn else "")
        listing = "; ".join(seen) or "no groups"
        if not matches:
            raise GroupNotFoundError(
                f"no Greengrass V1 group has {what} as its core"
                + (f" (group_id {self.group_id} was given)" if self.group_id else "")
                + f". Groups found: {listing}"
            )
        ids = ", ".join(f"{match.name} ({match.group_id})" for match in matches)
        raise GroupNotFoundError(
            f"{len(matches)} Greengrass V1 groups have {what} as core: {ids}; pass group_id"
        )

    # -- definitions ----------------------------------------------------------------------------

    def _definition(self, kind: str, arn: str) -> dict[str, Any] | None:
        """The content of the definition version ``arn`` (of ``kind``)."""
        _, definition_id, version_id = parse_definition_arn(arn)
        stem = _API_NAMES[kind]
        found = getattr(self.greengrass, f"get_{stem.lower()}_definition_version")(
            **{f"{stem}DefinitionId": definition_id, f"{stem}DefinitionVersionId": version_id}
        )
        return found.get("Definition")

    def _ensure_definition(
        self, kind: str, desired: dict[str, Any], current_arn: str | None, run_token: str
    ) -> str:
        """The ARN of a definition version holding ``desired``: the group's current one or a new one."""
        if current_arn and self._definition(kind, current_arn) == desired:
            logger.info("Reusing the group's %s definition %s (same content)", kind, current_arn)
            return current_arn
        created = getattr(self.greengrass, f"create_{_API_NAMES[kind].lower()}_definition")(
            AmznClientToken=idempotency_token(run_token, f"{kind}-definition", desired),
            Name=f"deeplens-{kind}-{run_token}"[:128],
            InitialVersion=desired,
        )
        logger.info("Created %s definition version %s", kind, created["LatestVersionArn"])
        return created["LatestVersionArn"]

    # -- deployment -----------------------------------------------------------------------------

    def _newest_deployment(self, group_id: str) -> dict[str, Any] | None:
        """The group's most recent deployment of any kind: what the device runs, or is moving to."""
        deployments = [
            deployment
            for page in self.greengrass.get_paginator("list_deployments").paginate(GroupId=group_id)
            for deployment in page.get("Deployments", [])
        ]
        return max(deployments, key=lambda deployment: str(deployment.get("CreatedAt", "")), default=None)

    def deploy(self, request: DeploymentRequest) -> DeploymentHandle:
        """New group version (core kept) with the function, model and subscription; then deploy it."""
        bucket, _ = split_s3_uri(request.model_s3_uri, "model_s3_uri")
        if not bucket.startswith(MODEL_BUCKET_PREFIX):
            raise ValueError(
                f"model bucket {bucket!r} must begin with {MODEL_BUCKET_PREFIX!r}: the DeepLens's Greengrass "
                "group role can only read such buckets (seed step 2)"
            )
        group = self.find_group(request.thing_name)
        logger.info("Device %s is the core of group %s (%s)", request.thing_name, group.name, group.group_id)
        version_id, version_arn = self._group_version(group, request)
        details = {"group_name": group.name, "group_version_id": version_id, "group_version_arn": version_arn}
        return self._start_or_reattach(group, version_id, request, details)

    def _group_version(self, group: DeviceGroup, request: DeploymentRequest) -> tuple[str, str]:
        """``(id, ARN)`` of a group version holding ``request``: the latest one if it already does."""
        base = group.definition
        function_runtime = self.function_runtime(request.lambda_version_arn)
        override = runtime_override(function_runtime, self.device_runtime)
        if override:
            logger.info(
                "Lambda version %s has runtime %s; the core runs it as %s (FunctionRuntimeOverride)",
                request.lambda_version_arn,
                function_runtime or "unknown (no Lambda client)",
                override,
            )
        desired = {
            "FunctionDefinitionVersionArn": (
                "functions",
                function_definition(request, self.access, override),
            ),
            "ResourceDefinitionVersionArn": (
                "resources",
                resource_definition(request.model_s3_uri, self.access),
            ),
            "SubscriptionDefinitionVersionArn": (
                "subscriptions",
                subscription_definition(request.lambda_version_arn, infer_topic(request.thing_name)),
            ),
        }
        wanted = {
            key: self._ensure_definition(kind, content, base.get(key), request.run_token)
            for key, (kind, content) in desired.items()
        }
        wanted.update({key: base[key] for key in KEPT_DEFINITIONS if base.get(key)})
        if all(base.get(key) == value for key, value in wanted.items()):
            logger.info("The group's latest version %s already holds this deployment", group.version_id)
            return group.version_id, group.version_arn
        created = self.greengrass.create_group_version(
            GroupId=group.group_id,
            AmznClientToken=idempotency_token(request.run_token, "group-version", [group.version_id, wanted]),
            **wanted,
        )
        logger.info(
            "Created group version %s (core %s kept)",
            created["Version"],
            base.get("CoreDefinitionVersionArn"),
        )
        return created["Version"], created["Arn"]

    def _start_or_reattach(
        self, group: DeviceGroup, version_id: str, request: DeploymentRequest, details: dict[str, Any]
    ) -> DeploymentHandle:
        """Re-attach to the group's newest deployment if it deploys this version and has not failed.

        Otherwise start one. An older deployment of this version does not count: the device has
        moved on since, and the new deployment's token names the newest one so it is not replayed.
        """
        newest = self._newest_deployment(group.group_id)
        if newest:
            match = _GROUP_VERSION_ARN.search(newest.get("GroupArn", ""))
            if match and (match["group"], match["version"]) == (group.group_id, version_id):
                handle = _handle(request, group, newest, {**details, "reattached": True})
                status = self.status(handle)
                if status.state != FAILURE:
                    logger.info("Re-attaching to deployment %s (%s)", handle.deployment_id, status.describe())
                    return handle
        replaced = newest.get("DeploymentId") if newest else None
        deployment = self.greengrass.create_deployment(
            GroupId=group.group_id,
            GroupVersionId=version_id,
            DeploymentType="NewDeployment",
            AmznClientToken=idempotency_token(request.run_token, "deployment", [version_id, replaced]),
        )
        logger.info(
            "Started deployment %s of group %s version %s",
            deployment["DeploymentId"],
            group.group_id,
            version_id,
        )
        return _handle(request, group, deployment, {**details, "reattached": False})

    def status(self, handle: DeploymentHandle) -> DeploymentStatus:
        """``GetDeploymentStatus``, with the device's ErrorMessage and ErrorDetails on failure."""
        if not handle.group_id:
            raise ValueError(f"deployment handle {handle.deployment_id} has no group_id")
        found = self.greengrass.get_deployment_status(
            GroupId=handle.group_id, DeploymentId=handle.deployment_id
        )
        raw = found.get("DeploymentStatus") or ""
        state = raw if raw in STATES else IN_PROGRESS
        if raw not in STATES:
            logger.warning("Unknown Greengrass deployment status %r; treating it as in progress", raw)
        return DeploymentStatus(
            state=state,
            error_message=found.get("ErrorMessage") or None,
            error_details=tuple(found.get("ErrorDetails") or ()),
            raw_status=raw,
        )


def _handle(
    request: DeploymentRequest, group: DeviceGroup, deployment: dict[str, Any], details: dict[str, Any]
) -> DeploymentHandle:
    """The handle of ``deployment`` (a CreateDeployment answer or a ListDeployments entry)."""
    return DeploymentHandle(
        METHOD,
        deployment["DeploymentId"],
        request.thing_name,
        group.group_id,
        {**details, "deployment_arn": deployment.get("DeploymentArn")},
    )
