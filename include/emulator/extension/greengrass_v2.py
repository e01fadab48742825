"""Greengrass V2 for the emulator: component versions, deployments and a simulated V2 core device.

moto 5.2.5 has no Greengrass V2. botocore's ``greengrassv2`` model signs as ``greengrass`` with
paths under ``/greengrass/v2/``, so moto's server sends those requests to its Greengrass (V1) app;
:func:`register` adds that path to moto's Greengrass URL map, served by :class:`GreengrassV2Response`
(parameters parsed and answers serialised from the ``greengrassv2`` service model).

What AWS does, and where it is written (the report of the change lists the same):

- CreateComponentVersion (``inlineRecipe``, JSON or YAML; keys are matched case-insensitively, as the
  Greengrass recipe parser does): ``RecipeFormatVersion`` must be ``2020-01-25`` (the only value of
  the recipe reference); ``ComponentName`` and a semantic ``ComponentVersion`` are required;
  ``Manifests`` is a list of objects whose ``Platform`` is an object, ``Lifecycle`` an object or a
  string, ``Artifacts`` a list of objects with a ``URI`` and ``Unarchive`` ``NONE`` or ``ZIP``, file
  names unique within a manifest. A recipe that is not JSON or YAML is answered
  ``AccessDeniedException`` "... is not authorized to perform: null" (the V2 troubleshooting page).
  An S3 artifact that does not exist, or whose bucket is in another Region, is refused at once:
  ``ValidationException`` "Invalid Input: Encountered following errors in Artifacts: {<uri> =
  Specified artifact resource cannot be accessed}" (troubleshooting page; aws/aws-cli#6261). An
  existing version is ``ConflictException`` "Component [<name> : <version>] for account [<account>]
  already exists with state: [<state>]" (IDT troubleshooting page). ``clientToken``: a repeated
  token gets the first successful answer for 8 hours (the model's documentation).
- The version starts ``REQUESTED`` (message ``NONE``, no errors, as in the getting-started output),
  then after ``EMULATOR_COMPONENT_VALIDATION_SECONDS`` the service computes each S3 artifact's
  digest (it replaces ``Digest``/``Algorithm`` in the recipe) and the version becomes
  ``DEPLOYABLE``, or ``FAILED`` with ``errors`` keyed by the artifact URI when the artifact can no
  longer be read (API_CloudComponentStatus). Clients must wait for ``DEPLOYABLE``.
- CreateDeployment: the target must be an existing IoT thing or thing group, every component
  version must exist and be ``DEPLOYABLE``; it answers ``deploymentId``, ``iotJobId`` and
  ``iotJobArn``. A new deployment to a target replaces its previous one (``isLatestForTarget``).
- A simulated core applies each deployment after ``EMULATOR_DEPLOYMENT_DELAY_SECONDS``
  (ListEffectiveDeployments: ``QUEUED`` → ``IN_PROGRESS`` → ``COMPLETED`` for a thing target,
  ``SUCCEEDED`` for a thing group, per the model's documentation, or ``FAILED`` with a ``reason`` and
  ``statusDetails``). It does what the nucleus does before a component runs
  (aws-greengrass-nucleus ``S3Downloader``): picks the first manifest matching its platform; gets AWS
  credentials through its IoT role alias (the alias and its role must exist, and the role must
  trust ``credentials.iot.amazonaws.com``); for each S3 artifact needs ``s3:GetBucketLocation`` on
  the bucket and ``s3:GetObject`` on the object (the role's inline and attached policies, evaluated
  by :mod:`.role_permissions`), downloads it, checks the digest, unzips ``ZIP`` artifacts, and checks a
  ``.tar.gz``/``.tgz`` model archive as the Greengrass V1 DeepLens does
  (:func:`emulator.extension.greengrass.check_model_archive`). Lifecycle scripts are not run here:
  a core registered with a deployment agent (below) runs them on its simulated device.

How the emulator learns that a thing is a Greengrass V2 core: a real core device appears when its
nucleus first connects, with the ``iotRoleAlias`` of its local configuration (default
``GreengrassV2TokenExchangeRoleAlias``). Here an emulator-only call plays the nucleus's start-up:
``POST <endpoint>/moto-api/emulator/greengrass-v2/core-devices`` with JSON
``{"coreDeviceThingName", "iotRoleAlias", "region", "accountId"?, "platform"?, "architecture"?}``
(:func:`emulator.seed.register_core_device` sends it). The thing must exist; the role alias need
not (a core with a wrong alias connects, then fails its deployments, as on AWS).

A core registered with ``"deploymentAgent": true`` has a simulated nucleus on a simulated device
(:mod:`emulator.simulated_deeplens.greengrass_core`) that applies its deployments for real. A real
nucleus is never called by the cloud: it keeps a connection open and takes its next deployment from
AWS IoT Jobs (``StartNextPendingJobExecution``), then reports the outcome (``UpdateJobExecution``,
whose status details become the effective deployment's). The agent does the same over two
emulator-only calls (JSON bodies with ``region`` and ``accountId``):
``POST <endpoint>/moto-api/emulator/greengrass-v2/core-devices/<thing>/deployments/next`` answers the
next deployment that passed the checks above (200: the job document, with each component's recipe,
its digests, the manifest for the core's platform and the merged configuration) or 204 when none
waits; ``POST .../core-devices/<thing>/deployments/<deploymentId>`` with ``{"status": "COMPLETED" |
"FAILED", "reason", "errorStack", "errorTypes"}`` ends it (``SUCCEEDED`` for a thing group target).
Until then the deployment stays ``IN_PROGRESS``, as it does on AWS while the device works.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse
from moto.greengrass import urls as greengrass_urls
from moto.iot.models import iot_backends
from moto.moto_api._internal import urls as moto_api_urls
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from emulator.extension.greengrass import check_model_archive
from emulator.extension.role_permissions import RolePermissions, find_role
from emulator.extension.runtime import Runtime
from emulator.extension.trust_policy import role_trust

log = logging.getLogger("emulator.greengrass_v2")

RECIPE_FORMAT_VERSIONS = ("2020-01-25",)
DEFAULT_ROLE_ALIAS = "GreengrassV2TokenExchangeRoleAlias"
CREDENTIALS_PRINCIPAL = "credentials.iot.amazonaws.com"
REGISTER_PATH = "/moto-api/emulator/greengrass-v2/core-devices"
TOKEN_TTL = timedelta(hours=8)
DIGEST_ALGORITHM = "SHA-256"
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_TARGET = re.compile(r"^arn:(aws[a-z-]*):iot:([^:]*):(\d+):(thing|thinggroup)/(.+)$")
_VERSION_ARN = re.compile(r"^arn:[^:]*:greengrass:([^:]*):(aws|\d+):components:([^:]+):versions:([^:]+)$")
_COMPONENT_ARN = re.compile(r"^arn:[^:]*:greengrass:([^:]*):(aws|\d+):components:([^:]+)$")
_LIFECYCLE_STEPS = ("install", "run", "startup", "shutdown", "recover", "bootstrap")
_UNARCHIVE = ("NONE", "ZIP")
_ARTIFACT_SCHEMES = ("s3", "greengrass", "docker")

_lock = threading.Lock()
_components: dict[tuple[str, str, str, str], dict[str, Any]] = {}
_deployments: dict[tuple[str, str], dict[str, Any]] = {}
_core_devices: dict[tuple[str, str, str], dict[str, Any]] = {}
_effective: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
_tokens: dict[tuple[str, str, str, str], tuple[datetime, dict[str, Any]]] = {}
_tokens_in_progress: set[tuple[str, str, str, str]] = set()
_agent_jobs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
_AGENT_PATH = re.compile(r"/core-devices/(?P<thing>[^/?]+)/deployments/(?P<deployment>[^/?]+)/?(?:\?.*)?$")
_AGENT_STATES = ("COMPLETED", "FAILED")


def _now() -> datetime:
    return datetime.now(UTC)


# --- errors (shapes of the greengrassv2 model) -----------------------------------------------


class ValidationException(ServiceException):
    code = "ValidationException"


class AccessDeniedException(ServiceException):
    code = "AccessDeniedException"


class RequestAlreadyInProgressException(ServiceException):
    code = "RequestAlreadyInProgressException"


class ConflictException(ServiceException):
    code = "ConflictException"

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message)
        self.resourceId = resource_id
        self.resourceType = resource_type


class ResourceNotFoundException(ServiceException):
    code = "ResourceNotFoundException"

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message)
        self.resourceId = resource_id
        self.resourceType = resource_type


# --- recipes ---------------------------------------------------------------------------------


def _field(mapping: Any, name: str) -> Any:
    """``mapping[name]`` with the key matched case-insensitively (recipes accept ``Uri`` and ``URI``)."""
    if not isinstance(mapping, dict):
        return None
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


def parse_recipe(blob: bytes) -> tuple[dict[str, Any], str]:
    """The recipe and its format (``JSON`` or ``YAML``); ValueError when it is neither."""
    text = blob.decode("utf-8")
    try:
        recipe = json.loads(text)
        kind = "JSON"
    except ValueError:
        try:
            recipe = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"the recipe is neither JSON nor YAML ({err})") from None
        kind = "YAML"
    if not isinstance(recipe, dict):
        raise ValueError("the recipe is not a JSON or YAML object")
    return recipe, kind


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _artifact_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def recipe_artifacts(recipe: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """Every ``(manifest index, artifact)`` of the recipe."""
    found = []
    for index, manifest in enumerate(_field(recipe, "Manifests") or []):
        for artifact in _field(manifest, "Artifacts") or []:
            found.append((index, artifact))
    return found


def validate_recipe(recipe: dict[str, Any]) -> tuple[str, str]:
    """``(name, version)`` of a well-formed recipe; ValidationException naming what is wrong."""
    problems: list[str] = []
    fmt = _field(recipe, "RecipeFormatVersion")
    if fmt is None:
        problems.append("RecipeFormatVersion is required")
    elif str(fmt) not in RECIPE_FORMAT_VERSIONS:
        problems.append(
            f"RecipeFormatVersion {fmt!r} is not supported (supported: {', '.join(RECIPE_FORMAT_VERSIONS)})"
        )
    name = _field(recipe, "ComponentName")
    if not isinstance(name, str) or not name.strip():
        problems.append("ComponentName is required")
    elif len(name) > 128 or ":" in name:
        problems.append(f"ComponentName {name!r} must be 1-128 characters without ':'")
    version = _field(recipe, "ComponentVersion")
    if not isinstance(version, str) or not version:
        problems.append("ComponentVersion is required")
    elif len(version) > 64 or not _SEMVER.match(version):
        problems.append(f"ComponentVersion {version!r} is not a semantic version (major.minor.patch)")
    manifests = _field(recipe, "Manifests")
    if manifests is not None and not isinstance(manifests, list):
        problems.append("Manifests must be a list")
        manifests = []
    for index, manifest in enumerate(manifests or []):
        where = f"Manifests[{index}]"
        if not isinstance(manifest, dict):
            problems.append(f"{where} must be an object")
            continue
        platform = _field(manifest, "Platform")
        if platform is not None and not isinstance(platform, dict):
            problems.append(f"{where}.Platform must be an object")
        problems.extend(_lifecycle_problems(_field(manifest, "Lifecycle"), f"{where}.Lifecycle"))
        problems.extend(_artifact_problems(_field(manifest, "Artifacts"), f"{where}.Artifacts"))
    lifecycle = _field(recipe, "Lifecycle")
    if lifecycle is not None and not isinstance(lifecycle, dict):
        problems.append("Lifecycle must be an object")
    if problems:
        raise ValidationException("Invalid Input: " + "; ".join(problems))
    return name, version


def _lifecycle_problems(lifecycle: Any, where: str) -> list[str]:
    if lifecycle is None or isinstance(lifecycle, str):
        return []
    if not isinstance(lifecycle, dict):
        return [f"{where} must be an object or a string"]
    problems = []
    for key, step in lifecycle.items():
        if str(key).lower() == "setenv":
            if not isinstance(step, dict):
                problems.append(f"{where}.{key} must be an object of environment variables")
        elif str(key).lower() in _LIFECYCLE_STEPS:
            if isinstance(step, dict):
                script = _field(step, "Script")
                if script is not None and not isinstance(script, str | dict):
                    problems.append(f"{where}.{key}.Script must be a string")
            elif not isinstance(step, str):
                problems.append(f"{where}.{key} must be an object or a string")
    return problems


def _artifact_problems(artifacts: Any, where: str) -> list[str]:
    if artifacts is None:
        return []
    if not isinstance(artifacts, list):
        return [f"{where} must be a list"]
    problems, names = [], set()
    for index, artifact in enumerate(artifacts):
        uri = _field(artifact, "URI")
        if not isinstance(uri, str) or not uri:
            problems.append(f"{where}[{index}].URI is required")
            continue
        scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
        if scheme not in _ARTIFACT_SCHEMES:
            problems.append(f"{where}[{index}].URI {uri!r} must be an s3://, greengrass: or docker: URI")
        unarchive = _field(artifact, "Unarchive")
        if unarchive is not None and str(unarchive).upper() not in _UNARCHIVE:
            problems.append(f"{where}[{index}].Unarchive {unarchive!r} must be NONE or ZIP")
        name = _artifact_name(uri)
        if name in names:
            problems.append(f"{where}: each artifact must have a unique file name ({name!r} repeats)")
        names.add(name)
    return problems


def _split_s3(uri: str) -> tuple[str, str] | None:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        return None
    bucket, key = uri[5:].split("/", 1)
    return (bucket, key) if bucket and key else None


def _read_s3(account: str, region: str, uri: str, *, same_region: bool = True) -> bytes | None:
    """The object's bytes, or None when it does not exist (or its bucket is in another Region)."""
    parts = _split_s3(uri)
    if parts is None:
        return None
    backend = s3_backends[account][get_partition(region)]
    bucket = backend.buckets.get(parts[0])
    if bucket is None or (same_region and bucket.region_name != region):
        return None
    key = backend.get_object(parts[0], parts[1])
    return None if key is None else key.value


def _digest(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _platforms(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    platforms = []
    for manifest in _field(recipe, "Manifests") or []:
        attributes = {str(k): str(v) for k, v in (_field(manifest, "Platform") or {}).items()}
        name = _field(manifest, "Name") or " ".join(attributes.values()) or "all"
        platforms.append({"name": str(name), "attributes": attributes})
    return platforms


# --- the service -------------------------------------------------------------------------------


def version_arn(account: str, region: str, name: str, version: str) -> str:
    """``arn:aws:greengrass:<region>:<account>:components:<name>:versions:<version>``."""
    return f"arn:{get_partition(region)}:greengrass:{region}:{account}:components:{name}:versions:{version}"


def _cached(key: tuple[str, str, str, str]) -> dict[str, Any] | None:
    with _lock:
        entry = _tokens.get(key)
        if entry and _now() - entry[0] < TOKEN_TTL:
            return entry[1]
        if key in _tokens_in_progress:
            raise RequestAlreadyInProgressException(
                "The request is already in progress: an earlier request with this clientToken "
                "is being processed"
            )
        _tokens_in_progress.add(key)
        return None


def _remember(key: tuple[str, str, str, str], answer: dict[str, Any] | None) -> None:
    with _lock:
        _tokens_in_progress.discard(key)
        if answer is not None:
            _tokens[key] = (_now(), answer)


def _idempotent(self: BaseResponse, operation: str, create: Any) -> Any:
    token = self._get_param("clientToken")
    if not token:
        return create()
    key = (self.current_account, self.region, operation, token)
    cached = _cached(key)
    if cached is not None:
        return cached
    answer = None
    try:
        answer = create()
        return answer
    finally:
        _remember(key, answer)


def _component(account: str, region: str, arn: str) -> dict[str, Any]:
    match = _VERSION_ARN.match(arn or "")
    component = None
    if match and match.group(1) == region:
        component = _components.get((account, region, match.group(3), match.group(4)))
    if component is None:
        raise ResourceNotFoundException(
            f"Component version {arn} does not exist", resource_id=arn, resource_type="COMPONENT_VERSION"
        )
    return component


def _status(component: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in component["status"].items() if v is not None}


class GreengrassV2Response(BaseResponse):
    """The greengrassv2 operations the pipeline uses, on moto's Greengrass endpoint."""

    def __init__(self) -> None:
        super().__init__(service_name="greengrassv2")
        self.automated_parameter_parsing = True

    # components

    def create_component_version(self) -> ActionResult:
        return ActionResult(_idempotent(self, "CreateComponentVersion", self._create_component_version))

    def _create_component_version(self) -> dict[str, Any]:
        account, region = self.current_account, self.region
        if self._get_param("lambdaFunction"):
            raise ValidationException("The emulator does not create components from Lambda functions")
        blob = self._get_param("inlineRecipe")
        if not blob:
            raise ValidationException("Invalid Input: one of inlineRecipe or lambdaFunction is required")
        if isinstance(blob, str):
            blob = blob.encode()
        try:
            recipe, kind = parse_recipe(blob)
        except (ValueError, UnicodeDecodeError) as err:
            log.warning("CreateComponentVersion: %s (AWS answers AccessDeniedException for it)", err)
            raise AccessDeniedException(
                f"User: arn:aws:iam::{account}:user/emulator is not authorized to perform: null"
            ) from None
        name, version = validate_recipe(recipe)
        unreadable = [
            artifact_uri
            for _, artifact in recipe_artifacts(recipe)
            if (artifact_uri := str(_field(artifact, "URI"))).startswith("s3://")
            and _read_s3(account, region, artifact_uri) is None
        ]
        if unreadable:
            errors = ", ".join(
                f"{uri} = Specified artifact resource cannot be accessed" for uri in unreadable
            )
            raise ValidationException(
                f"Invalid Input: Encountered following errors in Artifacts: {{{errors}}}"
            )
        arn = version_arn(account, region, name, version)
        key = (account, region, name, version)
        with _lock:
            if key in _components:
                state = _components[key]["status"]["componentState"]
                raise ConflictException(
                    f"Component [{name} : {version}] for account [{account}] "
                    f"already exists with state: [{state}]",
                    resource_id=arn,
                    resource_type="COMPONENT_VERSION",
                )
            component = {
                "arn": arn,
                "componentName": name,
                "componentVersion": version,
                "creationTimestamp": _now(),
                "publisher": _text(_field(recipe, "ComponentPublisher")),
                "description": _text(_field(recipe, "ComponentDescription")),
                "recipe": recipe,
                "recipeOutputFormat": kind,
                "tags": self._get_param("tags") or {},
                "status": {"componentState": "REQUESTED", "message": "NONE", "errors": {}},
            }
            _components[key] = component
            answer = {
                "arn": arn,
                "componentName": name,
                "componentVersion": version,
                "creationTimestamp": component["creationTimestamp"],
                "status": dict(component["status"]),
            }
        runtime = Runtime.get()
        runtime.spawn(f"component-{name}-{version}", lambda: _validate_component(runtime, key))
        return answer

    def describe_component(self) -> ActionResult:
        with _lock:
            component = _component(self.current_account, self.region, self._get_param("arn"))
            fields = (
                "arn",
                "componentName",
                "componentVersion",
                "creationTimestamp",
                "publisher",
                "description",
            )
            answer = {k: component[k] for k in fields if component.get(k) is not None}
            answer["status"] = _status(component)
            answer["platforms"] = _platforms(component["recipe"])
            answer["tags"] = component["tags"]
        return ActionResult(answer)

    def get_component(self) -> ActionResult:
        with _lock:
            component = _component(self.current_account, self.region, self._get_param("arn"))
            kind = self._get_param("recipeOutputFormat") or component["recipeOutputFormat"]
            recipe = json.loads(json.dumps(component["recipe"]))
            tags = dict(component["tags"])
        text = json.dumps(recipe, indent=2) if kind == "JSON" else yaml.safe_dump(recipe, sort_keys=False)
        return ActionResult({"recipeOutputFormat": kind, "recipe": text.encode(), "tags": tags})

    def list_component_versions(self) -> ActionResult:
        arn = self._get_param("arn")
        match = _COMPONENT_ARN.match(arn or "")
        with _lock:
            versions = [
                c
                for (a, r, name, _), c in _components.items()
                if match and (a, r, name) == (self.current_account, self.region, match.group(3))
            ]
        if not versions:
            raise ResourceNotFoundException(
                f"Component {arn} does not exist", resource_id=arn, resource_type="COMPONENT"
            )
        versions.sort(key=lambda c: c["creationTimestamp"], reverse=True)
        items = [{k: c[k] for k in ("componentName", "componentVersion", "arn")} for c in versions]
        return ActionResult(_page(self, "componentVersions", items))

    # deployments

    def create_deployment(self) -> ActionResult:
        answer = _idempotent(self, "CreateDeployment", self._create_deployment)
        return ActionResult(answer)

    def _create_deployment(self) -> dict[str, Any]:
        account, region = self.current_account, self.region
        target = self._get_param("targetArn")
        things = _target_things(account, region, target)
        components = self._get_param("components") or {}
        with _lock:
            for name, spec in components.items():
                version = (spec or {}).get("componentVersion")
                component = _components.get((account, region, name, version))
                arn = version_arn(account, region, name, str(version))
                if component is None:
                    raise ResourceNotFoundException(
                        f"Component version {arn} does not exist (public components are not emulated)",
                        resource_id=arn,
                        resource_type="COMPONENT_VERSION",
                    )
                state = component["status"]["componentState"]
                if state != "DEPLOYABLE":
                    raise ValidationException(
                        f"Component [{name} : {version}] is in state [{state}], not [DEPLOYABLE]: "
                        "only a DEPLOYABLE component version can be deployed"
                    )
            previous = [d for (a, _), d in _deployments.items() if a == account and d["targetArn"] == target]
            for deployment in previous:
                if deployment["isLatestForTarget"]:
                    deployment["isLatestForTarget"] = False
                    deployment["deploymentStatus"] = "INACTIVE"
            deployment_id = str(uuid.uuid4())
            job_id = str(uuid.uuid4())
            deployment = {
                "targetArn": target,
                "revisionId": str(len(previous) + 1),
                "deploymentId": deployment_id,
                "deploymentName": self._get_param("deploymentName"),
                "deploymentStatus": "ACTIVE",
                "iotJobId": job_id,
                "iotJobArn": f"arn:{get_partition(region)}:iot:{region}:{account}:job/{job_id}",
                "components": components,
                "deploymentPolicies": self._get_param("deploymentPolicies"),
                "iotJobConfiguration": self._get_param("iotJobConfiguration"),
                "creationTimestamp": _now(),
                "isLatestForTarget": True,
                "parentTargetArn": self._get_param("parentTargetArn"),
                "tags": self._get_param("tags") or {},
                "region": region,
            }
            _deployments[(account, deployment_id)] = deployment
            cores = [t for t in things if (account, region, t) in _core_devices]
            for thing in cores:
                _effective.setdefault((account, region, thing), {})[deployment_id] = {
                    "deploymentId": deployment_id,
                    "deploymentName": deployment["deploymentName"] or deployment_id,
                    "iotJobId": job_id,
                    "iotJobArn": deployment["iotJobArn"],
                    "targetArn": target,
                    "coreDeviceExecutionStatus": "QUEUED",
                    "creationTimestamp": deployment["creationTimestamp"],
                    "modifiedTimestamp": deployment["creationTimestamp"],
                }
        runtime = Runtime.get()
        for thing in cores:
            runtime.spawn(
                f"gg2-deployment-{deployment_id}-{thing}",
                lambda thing=thing: _apply(runtime, account, region, thing, deployment_id),
            )
        return {"deploymentId": deployment_id, "iotJobId": job_id, "iotJobArn": deployment["iotJobArn"]}

    def get_deployment(self) -> ActionResult:
        deployment_id = self._get_param("deploymentId")
        with _lock:
            deployment = _deployments.get((self.current_account, deployment_id))
            if deployment is None or deployment["region"] != self.region:
                raise ResourceNotFoundException(
                    f"Deployment {deployment_id} does not exist",
                    resource_id=deployment_id,
                    resource_type="DEPLOYMENT",
                )
            answer = {k: v for k, v in deployment.items() if v is not None and k != "region"}
        return ActionResult(answer)

    def list_deployments(self) -> ActionResult:
        target = self._get_param("targetArn")
        parent = self._get_param("parentTargetArn")
        latest_only = (self._get_param("historyFilter") or "LATEST_ONLY") == "LATEST_ONLY"
        fields = (
            "targetArn",
            "revisionId",
            "deploymentId",
            "deploymentName",
            "creationTimestamp",
            "deploymentStatus",
            "isLatestForTarget",
            "parentTargetArn",
        )
        with _lock:
            items = [
                {k: d[k] for k in fields if d.get(k) is not None}
                for (a, _), d in _deployments.items()
                if a == self.current_account
                and d["region"] == self.region
                and (not target or d["targetArn"] == target)
                and (not parent or d["parentTargetArn"] == parent)
                and (not latest_only or d["isLatestForTarget"])
            ]
        items.sort(key=lambda d: d["creationTimestamp"], reverse=True)
        return ActionResult(_page(self, "deployments", items))

    def list_effective_deployments(self) -> ActionResult:
        thing = self._get_param("coreDeviceThingName")
        key = (self.current_account, self.region, thing)
        with _lock:
            if key not in _core_devices:
                raise ResourceNotFoundException(
                    f"Core device {thing} does not exist", resource_id=thing, resource_type="CORE_DEVICE"
                )
            items = [dict(e) for e in _effective.get(key, {}).values()]
        items.sort(key=lambda e: e["creationTimestamp"], reverse=True)
        return ActionResult(_page(self, "effectiveDeployments", items))

    # core devices

    def get_core_device(self) -> ActionResult:
        thing = self._get_param("coreDeviceThingName")
        with _lock:
            core = _core_devices.get((self.current_account, self.region, thing))
            if core is None:
                raise ResourceNotFoundException(
                    f"Core device {thing} does not exist", resource_id=thing, resource_type="CORE_DEVICE"
                )
            answer = {k: v for k, v in core.items() if k not in ("iotRoleAlias", "deploymentAgent")}
        return ActionResult(answer)

    def list_core_devices(self) -> ActionResult:
        status = self._get_param("status")
        runtime_name = self._get_param("runtime")
        group_arn = self._get_param("thingGroupArn")
        members = None
        if group_arn:
            try:
                members = set(_target_things(self.current_account, self.region, group_arn))
            except ResourceNotFoundException:
                members = set()  # ListCoreDevices has no ResourceNotFoundException: nothing matches
        fields = (
            "coreDeviceThingName",
            "status",
            "lastStatusUpdateTimestamp",
            "platform",
            "architecture",
            "runtime",
        )
        with _lock:
            items = [
                {k: c[k] for k in fields}
                for (a, r, name), c in _core_devices.items()
                if (a, r) == (self.current_account, self.region)
                and (not status or c["status"] == status)
                and (not runtime_name or c["runtime"] == runtime_name)
                and (members is None or name in members)
            ]
        return ActionResult(_page(self, "coreDevices", items))


def _page(response: BaseResponse, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of ``items`` (``maxResults``, ``nextToken`` as an offset)."""
    size = int(response._get_param("maxResults") or 50)
    token = response._get_param("nextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise ValidationException(f"Invalid nextToken {token!r}") from None
    page: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page


def _target_things(account: str, region: str, target: str) -> list[str]:
    """The thing names a deployment target covers; ResourceNotFoundException if it does not exist."""
    match = _TARGET.match(target or "")
    not_found = ResourceNotFoundException(
        f"Target {target} does not exist: it must be an IoT thing or thing group of this account and Region",
        resource_id=str(target),
        resource_type="TARGET",
    )
    if not match or match.group(2) != region or match.group(3) != account:
        raise not_found
    iot = iot_backends[account][region]
    kind, name = match.group(4), match.group(5)
    if kind == "thing":
        thing = next((t for t in iot.things.values() if t.thing_name == name), None)
        if thing is None or thing.arn != target:
            raise not_found
        return [name]
    group = next((g for g in iot.thing_groups.values() if g.thing_group_name == name), None)
    if group is None or group.arn != target:
        raise not_found
    return [t.thing_name for t in group.things.values()]


# --- the service's validation of a new component version -------------------------------------


def _validate_component(runtime: Runtime, key: tuple[str, str, str, str]) -> None:
    account, region, name, version = key
    delay = runtime.settings.component_validation_seconds
    time.sleep(delay / 2)
    with _lock:
        _components[key]["status"]["componentState"] = "INITIATED"
        uris = [str(_field(a, "URI")) for _, a in recipe_artifacts(_components[key]["recipe"])]
    time.sleep(delay / 2)
    digests: dict[str, str] = {}
    errors: dict[str, str] = {}
    for uri in uris:
        if uri.startswith("s3://"):
            data = _read_s3(account, region, uri)
            if data is None:
                errors[uri] = "Specified artifact resource cannot be accessed"
            else:
                digests[uri] = _digest(data)
    with _lock:
        component = _components[key]
        for _, artifact in recipe_artifacts(component["recipe"]):
            uri = str(_field(artifact, "URI"))
            if uri in digests:
                artifact["Digest"], artifact["Algorithm"] = digests[uri], DIGEST_ALGORITHM
        if errors:
            component["status"].update(
                componentState="FAILED",
                message=f"Failed to compute the digest of {len(errors)} artifact(s): {', '.join(errors)}",
                errors=errors,
            )
        else:
            component["status"].update(componentState="DEPLOYABLE", message="NONE", errors={})
        state = component["status"]["componentState"]
    log.info("component %s %s: %s", name, version, state)


# --- the simulated Greengrass V2 core --------------------------------------------------------


class DeviceFailure(Exception):
    """Why the core device failed a deployment, as the nucleus reports it."""

    def __init__(self, reason: str, stack: list[str], types: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stack = ["DEPLOYMENT_FAILURE", *stack]
        self.types = types


def register_core_device(
    account: str,
    region: str,
    thing_name: str,
    role_alias: str = DEFAULT_ROLE_ALIAS,
    platform: str = "linux",
    architecture: str = "amd64",
    core_version: str = "2.14.3",
    deployment_agent: bool = False,
) -> dict[str, Any]:
    """Make the IoT thing ``thing_name`` a Greengrass V2 core whose nucleus uses ``role_alias``.

    ``deployment_agent``: a simulated nucleus takes this core's deployments (module docstring).
    """
    iot = iot_backends[account][region]
    if not any(t.thing_name == thing_name for t in iot.things.values()):
        raise LookupError(f"IoT thing {thing_name} does not exist in {account}/{region}")
    core = {
        "coreDeviceThingName": thing_name,
        "coreVersion": core_version,
        "platform": platform,
        "architecture": architecture,
        "runtime": "aws_nucleus_classic",
        "status": "HEALTHY",
        "lastStatusUpdateTimestamp": _now(),
        "tags": {},
        "iotRoleAlias": role_alias,
        "deploymentAgent": deployment_agent,
    }
    with _lock:
        _core_devices[(account, region, thing_name)] = core
    log.info("Greengrass V2 core device %s registered (role alias %s)", thing_name, role_alias)
    return core


def _register_handler(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    """``POST /moto-api/emulator/greengrass-v2/core-devices``: the emulator-only core registration."""
    if request.method != "POST":
        return 405, {}, json.dumps({"message": "POST a core device registration"})
    try:
        body = json.loads(request.get_data() or b"{}")  # sent as application/json
        core = register_core_device(
            account=str(body.get("accountId") or DEFAULT_ACCOUNT_ID),
            region=str(body.get("region") or "us-east-1"),
            thing_name=str(body["coreDeviceThingName"]),
            role_alias=str(body.get("iotRoleAlias") or DEFAULT_ROLE_ALIAS),
            platform=str(body.get("platform") or "linux"),
            architecture=str(body.get("architecture") or "amd64"),
            deployment_agent=bool(body.get("deploymentAgent")),
        )
    except (KeyError, ValueError) as err:
        return 400, {}, json.dumps({"message": f"bad registration: {err}"})
    except LookupError as err:
        return 404, {}, json.dumps({"message": str(err)})
    return 200, {"Content-Type": "application/json"}, json.dumps(core, default=str)


def _set_effective(key: tuple[str, str, str], deployment_id: str, **fields: Any) -> None:
    with _lock:
        _effective[key][deployment_id].update(fields, modifiedTimestamp=_now())


def _apply(runtime: Runtime, account: str, region: str, thing: str, deployment_id: str) -> None:
    key = (account, region, thing)
    delay = runtime.settings.deployment_delay_seconds
    time.sleep(min(0.5, delay / 2))
    _set_effective(key, deployment_id, coreDeviceExecutionStatus="IN_PROGRESS")
    time.sleep(max(0.0, delay - min(0.5, delay / 2)))
    with _lock:
        deployment = json.loads(json.dumps(_deployments[(account, deployment_id)], default=str))
        core = dict(_core_devices[key])
    try:
        _device_check(account, region, core, deployment)
    except DeviceFailure as failure:
        log.warning("Greengrass V2 deployment %s failed on %s: %s", deployment_id, thing, failure.reason)
        _set_effective(
            key,
            deployment_id,
            coreDeviceExecutionStatus="FAILED",
            reason=failure.reason,
            statusDetails={"errorStack": failure.stack, "errorTypes": failure.types},
        )
        return
    if core.get("deploymentAgent"):
        document = _job_document(account, region, core, deployment)
        with _lock:
            _agent_jobs.setdefault(key, []).append(document)
        log.info("Greengrass V2 deployment %s waits for the nucleus of %s", deployment_id, thing)
        return
    done = "COMPLETED" if ":thing/" in deployment["targetArn"] else "SUCCEEDED"
    _set_effective(key, deployment_id, coreDeviceExecutionStatus=done)
    log.info("Greengrass V2 deployment %s on %s: %s", deployment_id, thing, done)


def _merge(base: Any, update: Any) -> Any:
    """``update`` merged into ``base`` as the nucleus merges a configuration update (objects deeply)."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for name, value in update.items():
            merged[name] = _merge(base.get(name), value)
        return merged
    return update


def _reset(config: dict[str, Any], default: dict[str, Any], pointers: list[str]) -> dict[str, Any]:
    """``config`` with each JSON pointer of ``pointers`` back to its default (or removed)."""
    config = json.loads(json.dumps(config))
    for pointer in pointers:
        if pointer in ("", "/"):
            return json.loads(json.dumps(default))
        names = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
        target, source = config, default
        for name in names[:-1]:
            target = target.setdefault(name, {}) if isinstance(target, dict) else {}
            source = source.get(name, {}) if isinstance(source, dict) else {}
        if isinstance(target, dict):
            if isinstance(source, dict) and names[-1] in source:
                target[names[-1]] = json.loads(json.dumps(source[names[-1]]))
            else:
                target.pop(names[-1], None)
    return config


def _job_document(
    account: str, region: str, core: dict[str, Any], deployment: dict[str, Any]
) -> dict[str, Any]:
    """What the nucleus gets for ``deployment``: per component its recipe, manifest and configuration."""
    components = {}
    for name, spec in (deployment.get("components") or {}).items():
        version = spec["componentVersion"]
        with _lock:
            recipe = json.loads(
                json.dumps(_components[(account, region, name, version)]["recipe"], default=str)
            )
        manifest = next(
            m for m in _field(recipe, "Manifests") or [] if _platform_matches(_field(m, "Platform"), core)
        )
        default = _field(_field(recipe, "ComponentConfiguration"), "DefaultConfiguration") or {}
        update = spec.get("configurationUpdate") or {}
        configuration = _reset(default, default, list(update.get("reset") or []))
        if update.get("merge"):
            configuration = _merge(configuration, json.loads(update["merge"]))
        components[name] = {
            "componentVersion": version,
            "recipe": recipe,
            "manifest": manifest,
            "configuration": configuration,
        }
    return {
        "deploymentId": deployment["deploymentId"],
        "targetArn": deployment["targetArn"],
        "deploymentPolicies": deployment.get("deploymentPolicies") or {},
        "components": components,
    }


def _agent_handler(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    """The simulated nucleus's two calls: take the next deployment, report one's outcome."""
    match = _AGENT_PATH.search(full_url)
    if request.method != "POST" or match is None:
        return 405, {}, json.dumps({"message": "POST .../deployments/next or .../deployments/<id>"})
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as err:
        return 400, {}, json.dumps({"message": f"bad body: {err}"})
    account = str(body.get("accountId") or DEFAULT_ACCOUNT_ID)
    key = (account, str(body.get("region") or "us-east-1"), match.group("thing"))
    json_type = {"Content-Type": "application/json"}
    with _lock:
        core = _core_devices.get(key)
        if core is None or not core.get("deploymentAgent"):
            return 404, {}, json.dumps({"message": f"{key[2]} is no core device with a deployment agent"})
        if match.group("deployment") == "next":
            jobs = _agent_jobs.get(key) or []
            return (200, json_type, json.dumps(jobs.pop(0), default=str)) if jobs else (204, {}, "")
        effective = _effective.get(key, {}).get(match.group("deployment"))
        if effective is None or effective["coreDeviceExecutionStatus"] != "IN_PROGRESS":
            return 409, {}, json.dumps({"message": "no such deployment in progress on this core"})
        target = effective["targetArn"]
    status = str(body.get("status"))
    if status not in _AGENT_STATES:
        return 400, {}, json.dumps({"message": f"status must be one of {', '.join(_AGENT_STATES)}"})
    fields: dict[str, Any] = {"coreDeviceExecutionStatus": status}
    if status == "COMPLETED" and ":thing/" not in target:
        fields["coreDeviceExecutionStatus"] = "SUCCEEDED"
    if status == "FAILED":
        fields["reason"] = str(body.get("reason") or "")
        fields["statusDetails"] = {
            "errorStack": [str(c) for c in body.get("errorStack") or []],
            "errorTypes": [str(t) for t in body.get("errorTypes") or []],
        }
    _set_effective(key, match.group("deployment"), **fields)
    log.info("Greengrass V2 deployment %s on %s: %s", match.group("deployment"), key[2], fields)
    return 200, json_type, json.dumps({"coreDeviceExecutionStatus": fields["coreDeviceExecutionStatus"]})


def _platform_matches(platform: Any, core: dict[str, Any]) -> bool:
    attributes = {"os": core["platform"], "architecture": core["architecture"]}
    for name, wanted in (platform or {}).items():
        wanted, actual = str(wanted), attributes.get(str(name))
        if wanted in ("*", "all"):
            continue
        if len(wanted) > 1 and wanted.startswith("/") and wanted.endswith("/"):
            if actual is None or not re.fullmatch(wanted[1:-1], actual):
                return False
        elif wanted != actual:
            return False
    return True


class _Credentials:
    """The token exchange role, fetched once per deployment through the core's role alias."""

    def __init__(self, account: str, region: str, role_alias: str) -> None:
        self.account, self.region, self.role_alias = account, region, role_alias
        self._permissions: RolePermissions | None = None

    def permissions(self) -> RolePermissions:
        if self._permissions is None:
            self._permissions = self._fetch()
        return self._permissions

    def _fetch(self) -> RolePermissions:
        def fail(reason: str) -> DeviceFailure:
            return DeviceFailure(
                f"Failed to get AWS credentials through IoT role alias {self.role_alias}: {reason}",
                ["ARTIFACT_DOWNLOAD_ERROR", "CREDENTIAL_ENDPOINT_AUTH_FAILURE"],
                ["PERMISSION_ERROR"],
            )

        alias = iot_backends[self.account][self.region].role_aliases.get(self.role_alias)
        if alias is None:
            raise fail("the role alias does not exist")
        role = find_role(alias.role_arn)
        if role is None:
            raise fail(f"its role {alias.role_arn} does not exist")
        trust = role_trust(role.arn, CREDENTIALS_PRINCIPAL)
        if not trust:
            raise fail(
                f"the credentials provider cannot assume role {role.arn}: its trust policy: {trust.reason}"
            )
        permissions = RolePermissions(role.arn, role)
        permissions.policies()  # read the policies now, as the credentials are issued
        return permissions

    def allows(self, action: str, resource: str) -> bool:
        return self.permissions().allows(action, resource)


def _device_check(account: str, region: str, core: dict[str, Any], deployment: dict[str, Any]) -> None:
    """What the nucleus verifies before it runs the deployment's components; DeviceFailure otherwise."""
    credentials = _Credentials(account, region, core["iotRoleAlias"])
    for name, spec in (deployment.get("components") or {}).items():
        version = spec["componentVersion"]
        with _lock:
            component = json.loads(json.dumps(_components[(account, region, name, version)], default=str))
        manifests = _field(component["recipe"], "Manifests") or []
        manifest = next((m for m in manifests if _platform_matches(_field(m, "Platform"), core)), None)
        if manifest is None:
            raise DeviceFailure(
                f"The latest version of Component {name} doesn't claim platform "
                f"{{os={core['platform']}, architecture={core['architecture']}}} compatibility",
                ["NO_AVAILABLE_COMPONENT_VERSION", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"],
                ["REQUEST_ERROR"],
            )
        for artifact in _field(manifest, "Artifacts") or []:
            _check_artifact(account, region, name, artifact, credentials)


def _check_artifact(
    account: str, region: str, component: str, artifact: dict[str, Any], credentials: _Credentials
) -> None:
    uri = str(_field(artifact, "URI"))
    prefix = f"Failed to download artifact {uri} of component {component}"
    parts = _split_s3(uri)
    if parts is None:
        raise DeviceFailure(
            f"{prefix}: the emulated core downloads s3:// artifacts only",
            ["ARTIFACT_DOWNLOAD_ERROR", "UNSUPPORTED_ARTIFACT_SCHEME"],
            ["COMPONENT_RECIPE_ERROR"],
        )
    bucket, key = parts
    partition = get_partition(region)
    if not credentials.allows("s3:GetBucketLocation", f"arn:{partition}:s3:::{bucket}"):
        raise DeviceFailure(
            f"{prefix}: Failed to determine S3 bucket location. GetBucketLocation returns 403 Access Denied "
            f"(the token exchange role does not allow s3:GetBucketLocation on arn:{partition}:s3:::{bucket})",
            ["ARTIFACT_DOWNLOAD_ERROR", "S3_GET_BUCKET_LOCATION_ACCESS_DENIED"],
            ["PERMISSION_ERROR"],
        )
    if not credentials.allows("s3:GetObject", f"arn:{partition}:s3:::{bucket}/{key}"):
        raise DeviceFailure(
            f"{prefix}: Failed to head artifact object from S3. HeadObject returns 403 Access Denied "
            f"(the token exchange role does not allow s3:GetObject on arn:{partition}:s3:::{bucket}/{key})",
            ["ARTIFACT_DOWNLOAD_ERROR", "S3_HEAD_OBJECT_ACCESS_DENIED"],
            ["PERMISSION_ERROR"],
        )
    data = _read_s3(account, region, uri, same_region=False)
    if data is None:
        raise DeviceFailure(
            f"{prefix}: Failed to head artifact object from S3. HeadObject returns 404 Resource Not Found",
            ["ARTIFACT_DOWNLOAD_ERROR", "S3_HEAD_OBJECT_RESOURCE_NOT_FOUND"],
            ["REQUEST_ERROR"],
        )
    digest = _field(artifact, "Digest")
    if digest and digest != _digest(data):
        raise DeviceFailure(
            f"{prefix}: Integrity check for downloaded artifact failed. Probably due to file corruption. "
            "(the object changed after the component version was created)",
            ["ARTIFACT_DOWNLOAD_ERROR", "ARTIFACT_CHECKSUM_MISMATCH"],
            ["COMPONENT_RECIPE_ERROR"],
        )
    if str(_field(artifact, "Unarchive") or "NONE").upper() == "ZIP":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as err:
            bad = str(err)
        if bad:
            raise DeviceFailure(
                f"Failed to unarchive artifact {uri} of component {component}: not a readable ZIP ({bad})",
                ["ARTIFACT_DOWNLOAD_ERROR", "IO_ERROR", "IO_UNZIP_ERROR"],
                ["DEVICE_ERROR"],
            )
    elif key.endswith((".tar.gz", ".tgz")):
        try:
            check_model_archive(data, uri)
        except ValueError as err:
            raise DeviceFailure(
                f"Component {component} would break on the DeepLens "
                f"(its install step unpacks the model): {err}",
                ["COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
                ["USER_COMPONENT_ERROR"],
            ) from None


# --- registration ------------------------------------------------------------------------------


def register() -> None:
    """Serve ``/greengrass/v2/...`` on moto's Greengrass endpoint, and the core registration call."""
    greengrass_urls.url_paths["{0}/greengrass/v2/(?P<greengrass_v2_path>.+)$"] = GreengrassV2Response.dispatch
    moto_api_urls.url_paths["{0}" + REGISTER_PATH + "$"] = _register_handler
    moto_api_urls.url_paths[
        "{0}" + REGISTER_PATH + "/(?P<thing>[^/]+)/deployments/(?P<deployment>[^/]+)$"
    ] = _agent_handler
