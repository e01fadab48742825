"""A simulated DeepLens applying Greengrass V1 deployments, for the emulator.

moto 5.2.5 leaves every deployment "InProgress" for ever and ignores AmznClientToken. Here the
device applies a deployment after a delay and checks what a real DeepLens would need: each Lambda
function in the group version exists as a published version; each machine-learning model resource
is a readable ``model.tar.gz`` in S3 holding a ``deploy_*-symbol.json`` graph with its params. The
deployment then reports ``Success``, or ``Failure`` with an ErrorMessage saying what was missing.
Create calls that carry an ``X-Amzn-Client-Token`` are idempotent, as on AWS.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import threading
import time
import zipfile
from typing import Any

from moto.awslambda.models import lambda_backends
from moto.greengrass.exceptions import GreengrassClientError
from moto.greengrass.models import greengrass_backends
from moto.greengrass.responses import GreengrassResponse

from emulator.extension.groundtruth import split_s3_uri
from emulator.extension.runtime import Runtime

log = logging.getLogger("emulator.greengrass")

_lock = threading.Lock()
_token_responses: dict[tuple[str, str, str, str], Any] = {}
_errors: dict[str, str] = {}
_IDEMPOTENT = (
    "create_core_definition",
    "create_core_definition_version",
    "create_device_definition",
    "create_device_definition_version",
    "create_function_definition",
    "create_function_definition_version",
    "create_resource_definition",
    "create_resource_definition_version",
    "create_subscription_definition",
    "create_subscription_definition_version",
    "create_group",
    "create_group_version",
)
_original_create_deployment = GreengrassResponse.create_deployment
_original_get_deployment_status = GreengrassResponse.get_deployment_status


def _idempotent(name: str, original: Any) -> Any:
    def handler(self: GreengrassResponse) -> Any:
        token = self.headers.get("X-Amzn-Client-Token")
        if not token:
            return original(self)
        key = (self.current_account, self.region, f"{name}:{self.path}", token)
        with _lock:
            if key not in _token_responses:
                _token_responses[key] = original(self)
            return _token_responses[key]

    return handler


def _create_deployment(self: GreengrassResponse) -> str:
    token = self.headers.get("X-Amzn-Client-Token")
    key = (self.current_account, self.region, f"create_deployment:{self.path}", token or "")
    with _lock:
        if token and key in _token_responses:
            return _token_responses[key]
    body = _original_create_deployment(self)
    deployment_id = json.loads(body)["DeploymentId"]
    group_id = self.path.split("/")[-2]
    version_id = self._get_param("GroupVersionId")
    with _lock:
        if token:
            _token_responses[key] = body
    runtime = Runtime.get()
    account, region = self.current_account, self.region
    runtime.spawn(
        f"deployment-{deployment_id}",
        lambda: _apply(runtime, account, region, group_id, version_id, deployment_id),
    )
    return body


def _get_deployment_status(self: GreengrassResponse) -> str:
    body = json.loads(_original_get_deployment_status(self))
    deployment_id = self.path.split("/")[-2]
    with _lock:
        error = _errors.get(deployment_id)
    if error:
        body["ErrorMessage"] = error
        body["ErrorDetails"] = [{"DetailedErrorCode": "GG-DEPLOY", "DetailedErrorMessage": error}]
    return json.dumps(body)


def _definition_ids(arn: str) -> tuple[str, str]:
    """``.../definition/<kind>/<id>/versions/<version>`` → (id, version)."""
    parts = arn.split("/")
    return parts[-3], parts[-1]


def check_model_archive(data: bytes, uri: str) -> str:
    """The deploy model name in a model archive; ValueError saying what a DeepLens would miss."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            names = archive.getnames()
    except tarfile.TarError as err:
        raise ValueError(f"{uri} is not a gzip tar archive ({err})") from None
    graphs = [
        n.rsplit("/", 1)[-1]
        for n in names
        if n.rsplit("/", 1)[-1].startswith("deploy_") and n.endswith("-symbol.json")
    ]
    if not graphs:
        raise ValueError(f"{uri} holds no deploy_*-symbol.json (members: {sorted(names)})")
    model = graphs[0][: -len("-symbol.json")]
    if not any(n.endswith(f"{model}-0000.params") for n in names):
        raise ValueError(f"{uri} holds {graphs[0]} but not {model}-0000.params")
    return model


def device_check(runtime: Runtime, account: str, region: str, group_id: str, version_id: str) -> None:
    """What the device verifies before it reports success; ValueError with the reason otherwise."""
    greengrass = runtime.client("greengrass", region)
    definition = greengrass.get_group_version(GroupId=group_id, GroupVersionId=version_id)["Definition"]
    functions: list[dict[str, Any]] = []
    if "FunctionDefinitionVersionArn" in definition:
        fid, fver = _definition_ids(definition["FunctionDefinitionVersionArn"])
        functions = greengrass.get_function_definition_version(
            FunctionDefinitionId=fid, FunctionDefinitionVersionId=fver
        )["Definition"].get("Functions", [])
    if not functions:
        raise ValueError("the group version has no Lambda function to run")
    lam = runtime.client("lambda", region)
    for function in functions:
        arn = function["FunctionArn"]
        if arn.count(":") < 7 or arn.endswith(":$LATEST"):
            raise ValueError(f"{arn}: Greengrass needs a published version or alias, not $LATEST")
        try:
            lam.get_function(FunctionName=arn)
        except lam.exceptions.ResourceNotFoundException:
            raise ValueError(f"Lambda function {arn} does not exist") from None
        check_function_for_the_core(account, region, arn, function.get("FunctionConfiguration") or {})
    if "ResourceDefinitionVersionArn" in definition:
        rid, rver = _definition_ids(definition["ResourceDefinitionVersionArn"])
        resources = greengrass.get_resource_definition_version(
            ResourceDefinitionId=rid, ResourceDefinitionVersionId=rver
        )["Definition"].get("Resources", [])
        s3 = runtime.client("s3", region)
        for resource in resources:
            data = resource.get("ResourceDataContainer", {}).get("S3MachineLearningModelResourceData")
            if not data:
                continue
            bucket, key = split_s3_uri(data["S3Uri"])
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except s3.exceptions.ClientError as err:
                raise ValueError(f"cannot download the model {data['S3Uri']}: {err}") from None
            check_model_archive(body, data["S3Uri"])


DEEPLENS_CORE_RUNTIME = "python3.7"
"""The only Python runtime a DeepLens's Greengrass V1 core (GGC 1.x on the device) runs."""


def check_function_for_the_core(account: str, region: str, arn: str, configuration: dict[str, Any]) -> None:
    """What the DeepLens's core needs of a Python function: to run it as Python 3.7 (its Lambda
    runtime or ``FunctionRuntimeOverride``) and, at the zip's root, the ``greengrasssdk`` package
    (AWS's V1 packaging guide: "the greengrasssdk folder must be in the root")."""
    name, _, version = arn.split(":function:", 1)[1].partition(":")
    function = lambda_backends[account][region].get_function(name, version or None)
    effective = configuration.get("FunctionRuntimeOverride") or function.run_time
    if effective != DEEPLENS_CORE_RUNTIME:
        raise ValueError(
            f"{arn} would run as {effective}, which the DeepLens's Greengrass core does not have; set "
            f"FunctionRuntimeOverride to {DEEPLENS_CORE_RUNTIME} in the function definition"
        )
    with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as package:
        if "greengrasssdk/__init__.py" not in package.namelist():
            raise ValueError(
                f"{arn}: the deployment package has no greengrasssdk/ at its root: the function "
                "cannot import greengrasssdk on the core"
            )


def _apply(
    runtime: Runtime, account: str, region: str, group_id: str, version_id: str, deployment_id: str
) -> None:
    time.sleep(runtime.settings.deployment_delay_seconds)
    try:
        device_check(runtime, account, region, group_id, version_id)
        status, error = "Success", None
    except Exception as err:
        status, error = "Failure", str(err)
        log.warning("deployment %s failed on the simulated device: %s", deployment_id, err)
    deployment = greengrass_backends[account][region].deployments[deployment_id]
    with _lock:
        if error:
            _errors[deployment_id] = error
        deployment.deployment_status = status
        from moto.core.utils import utcnow

        deployment.update_at_datetime = utcnow()
    log.info("deployment %s: %s", deployment_id, status)


V1_ENDED_MESSAGE = (
    "AWS IoT Greengrass Version 1 reached its end of support on October 7th, 2026: its resources are "
    "no longer accessible. Deploy with AWS IoT Greengrass Version 2 (emulator: EMULATOR_GREENGRASS_V1="
    "available keeps the legacy API for tests)"
)


class GreengrassV1EndedException(GreengrassClientError):
    """Every Greengrass V1 call after its end of support (AWS: "you will no longer be able to access
    the AWS IoT Greengrass V1 resources"; the error AWS answers with is not documented)."""

    def __init__(self) -> None:
        super().__init__("BadRequestException", V1_ENDED_MESSAGE)


_original_call_action = GreengrassResponse.call_action


def _call_action(self: GreengrassResponse) -> Any:
    if Runtime.get().settings.greengrass_v1 != "available":
        raise GreengrassV1EndedException()
    return _original_call_action(self)


def register() -> None:
    """Make Greengrass V1 deployments finish and create calls honour idempotency tokens; refuse the
    whole V1 API unless the settings keep it available (it ended on 7 October 2026)."""
    GreengrassResponse.call_action = _call_action
    for name in _IDEMPOTENT:
        setattr(GreengrassResponse, name, _idempotent(name, getattr(GreengrassResponse, name)))
    GreengrassResponse.create_deployment = _create_deployment
    GreengrassResponse.get_deployment_status = _get_deployment_status
