"""Greengrass V2: the recipe and requests, and deployments to a Greengrass V2 core on the emulator.

The emulator (``emulator.extension.greengrass_v2``) serves Greengrass V2 as AWS does: a new
component version is REQUESTED until its artifacts are checked, only a DEPLOYABLE version can be
deployed, and the simulated core reports the deployment's outcome with the reason. A few cases the
emulator cannot produce on demand (a version Greengrass marks FAILED, a wait that runs out, older
status values) use botocore's Stubber, which still validates every request and response against the
greengrassv2 service model.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from deeplens_pipeline import lambda_package
from deeplens_pipeline.deploy import greengrass_v2 as gg2
from deeplens_pipeline.deploy.base import DeploymentHandle

FUNCTION_ZIP = "s3://deeplens-chocolate/deploy/functions/deeplens-inference-3.zip"
THING_ARN = "arn:aws:iot:eu-west-1:123456789012:thing/deeplens_abc"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def clients():
    greengrass = boto3.client("greengrassv2", region_name="eu-west-1")
    iot = boto3.client("iot", region_name="eu-west-1")
    return greengrass, iot


def validate(client, operation: str, params: dict) -> None:
    shape = client.meta.service_model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def test_requests_are_valid_for_the_service_model(clients, new_request) -> None:
    greengrass, _ = clients
    request = new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
    create_component, create_deployment = gg2.GreengrassV2Deployer(greengrass, None).build_requests(
        request, THING_ARN
    )
    validate(greengrass, "CreateComponentVersion", create_component)
    validate(greengrass, "CreateDeployment", create_deployment)
    recipe = json.loads(create_component["inlineRecipe"])
    assert recipe["ComponentName"] == "com.deeplens.inference.deeplens-inference"
    assert recipe["ComponentVersion"].startswith("1.0.")
    (manifest,) = recipe["Manifests"]
    assert manifest["Artifacts"] == [
        {"Uri": request.model_s3_uri, "Unarchive": "NONE"},
        {"Uri": FUNCTION_ZIP, "Unarchive": "ZIP"},
    ]
    lifecycle = manifest["Lifecycle"]
    assert lifecycle["Setenv"]["DEEPLENS_MODEL_NAME"] == "deploy_model_algo_1"
    assert lifecycle["Setenv"]["DEEPLENS_IOT_TOPIC"] == "$aws/things/deeplens_abc/infer"
    assert (
        "tar -xzf {artifacts:path}/model-deploy.tar.gz -C /opt/awscam/artifacts"
        in lifecycle["Install"]["Script"]
    )
    assert lifecycle["Run"]["Script"] == (
        "python3.7 -u {artifacts:decompressedPath}/deeplens-inference-3/deeplens_inference.py"
    )
    # the DeepLens's plain python3 (Ubuntu 16.04) is too old for the function: 3.7, as on its V1 core
    assert "python3.7 -m pip install --user 'awsiotsdk" in lifecycle["Install"]["Script"]
    policy = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
        "aws.greengrass.ipc.mqttproxy"
    ]
    (grant,) = policy.values()
    assert grant["operations"] == ["aws.greengrass#PublishToIoTCore"]
    assert grant["resources"] == ["$aws/things/deeplens_abc/infer"]
    assert create_deployment["targetArn"] == THING_ARN
    assert create_deployment["components"] == {
        recipe["ComponentName"]: {"componentVersion": recipe["ComponentVersion"]}
    }


def test_version_follows_content(clients, new_request) -> None:
    greengrass, _ = clients
    deployer = gg2.GreengrassV2Deployer(greengrass, None)
    request = new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
    first, deploy_first = deployer.build_requests(request, THING_ARN)
    again, deploy_again = deployer.build_requests(request, THING_ARN)
    assert first == again
    assert deploy_first["clientToken"] == deploy_again["clientToken"]
    other_model = request.__class__(
        **{**request.__dict__, "model_s3_uri": "s3://deeplens-chocolate/m2/model.tar.gz"}
    )
    changed, deploy_changed = deployer.build_requests(other_model, THING_ARN)
    assert (
        json.loads(changed["inlineRecipe"])["ComponentVersion"]
        != json.loads(first["inlineRecipe"])["ComponentVersion"]
    )
    assert deploy_changed["clientToken"] != deploy_first["clientToken"]


def test_function_zip_is_required(clients, new_request) -> None:
    greengrass, _ = clients
    deployer = gg2.GreengrassV2Deployer(greengrass, None)
    with pytest.raises(ValueError, match="needs function_s3_uri"):
        deployer.build_requests(new_request("deeplens_abc"), THING_ARN)
    with pytest.raises(ValueError, match="must be the function's .zip"):
        deployer.build_requests(
            new_request("deeplens_abc", function_s3_uri="s3://deeplens-b/f.tar"), THING_ARN
        )


HANDLE = DeploymentHandle("greengrass-v2", "dep-1", "deeplens_abc")


def effective(status: str, **extra) -> dict:
    return {
        "effectiveDeployments": [
            {
                "deploymentId": "dep-0",
                "deploymentName": "older",
                "targetArn": THING_ARN,
                "coreDeviceExecutionStatus": "FAILED",
                "creationTimestamp": NOW,
                "modifiedTimestamp": NOW,
            },
            {
                "deploymentId": "dep-1",
                "deploymentName": "ours",
                "targetArn": THING_ARN,
                "coreDeviceExecutionStatus": status,
                "creationTimestamp": NOW,
                "modifiedTimestamp": NOW,
                **extra,
            },
        ]
    }


@pytest.mark.parametrize(
    ("device_status", "state"),
    [
        ("SUCCEEDED", "Success"),
        ("COMPLETED", "Success"),
        ("IN_PROGRESS", "InProgress"),
        ("QUEUED", "InProgress"),
    ],
)
def test_status_from_the_device(clients, device_status: str, state: str) -> None:
    greengrass, _ = clients
    with Stubber(greengrass) as stub:
        stub.add_response(
            "list_effective_deployments", effective(device_status), {"coreDeviceThingName": "deeplens_abc"}
        )
        status = gg2.GreengrassV2Deployer(greengrass, None).status(HANDLE)
    assert (status.state, status.raw_status) == (state, device_status)


def test_device_failure_carries_reason_and_details(clients) -> None:
    greengrass, _ = clients
    details = {
        "errorStack": ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR"],
        "errorTypes": ["DEVICE_ERROR"],
    }
    with Stubber(greengrass) as stub:
        stub.add_response(
            "list_effective_deployments",
            effective("FAILED", reason="Access denied to s3://deeplens-chocolate", statusDetails=details),
            {"coreDeviceThingName": "deeplens_abc"},
        )
        status = gg2.GreengrassV2Deployer(greengrass, None).status(HANDLE)
    assert status.state == "Failure"
    assert status.describe() == (
        "Failure (FAILED): Access denied to s3://deeplens-chocolate "
        "[errorStack] DEPLOYMENT_FAILURE > ARTIFACT_DOWNLOAD_ERROR [errorTypes] DEVICE_ERROR"
    )


@pytest.mark.parametrize(("job_status", "state"), [("ACTIVE", "InProgress"), ("CANCELED", "Failure")])
def test_status_before_the_device_reports(clients, job_status: str, state: str) -> None:
    greengrass, _ = clients
    with Stubber(greengrass) as stub:
        stub.add_response(
            "list_effective_deployments",
            {"effectiveDeployments": []},
            {"coreDeviceThingName": "deeplens_abc"},
        )
        stub.add_response("get_deployment", {"deploymentStatus": job_status}, {"deploymentId": "dep-1"})
        status = gg2.GreengrassV2Deployer(greengrass, None).status(HANDLE)
    assert status.state == state


def test_component_name_rules() -> None:
    assert gg2.component_name("deeplens-x") == "com.deeplens.inference.deeplens-x"
    with pytest.raises(ValueError, match="component name"):
        gg2.component_name("deeplens-x", prefix="bad prefix")


# -- waiting for DEPLOYABLE (stubbed: states the emulator reaches only by timing) ------------------

ARN = "arn:aws:greengrass:eu-west-1:123456789012:components:com.deeplens.inference.x:versions:1.0.1"


def describe(stub: Stubber, state: str, **status: Any) -> None:
    stub.add_response(
        "describe_component", {"arn": ARN, "status": {"componentState": state, **status}}, {"arn": ARN}
    )


def test_wait_polls_until_deployable(clients) -> None:
    greengrass, _ = clients
    sleeps: list[float] = []
    deployer = gg2.GreengrassV2Deployer(greengrass, None, component_poll_interval=3, sleep=sleeps.append)
    with Stubber(greengrass) as stub:
        describe(stub, "REQUESTED", message="NONE")
        describe(stub, "INITIATED")
        describe(stub, "DEPLOYABLE")
        deployer.wait_deployable(ARN)
        stub.assert_no_pending_responses()
    assert sleeps == [3, 3]


def test_a_failed_component_version_fails_with_greengrass_message(clients) -> None:
    greengrass, _ = clients
    uri = "s3://deeplens-chocolate/model.tar.gz"
    with Stubber(greengrass) as stub:
        describe(
            stub,
            "FAILED",
            message="Failed to compute the digest of 1 artifact(s)",
            errors={uri: "Specified artifact resource cannot be accessed"},
        )
        with pytest.raises(gg2.ComponentNotDeployable) as failed:
            gg2.GreengrassV2Deployer(greengrass, None).wait_deployable(ARN)
    assert f"{ARN} FAILED: Failed to compute the digest of 1 artifact(s)" in str(failed.value)
    assert f"{uri}: Specified artifact resource cannot be accessed" in str(failed.value)
    assert f"delete-component --arn {ARN}" in str(failed.value)


def test_the_wait_is_bounded(clients) -> None:
    greengrass, _ = clients
    deployer = gg2.GreengrassV2Deployer(greengrass, None, component_timeout=0)
    with Stubber(greengrass) as stub:
        describe(stub, "REQUESTED")
        with pytest.raises(gg2.ComponentNotDeployable, match="still REQUESTED after 0s"):
            deployer.wait_deployable(ARN)


def test_component_version_arn() -> None:
    assert gg2.component_version_arn(THING_ARN, "com.x", "1.0.2") == (
        "arn:aws:greengrass:eu-west-1:123456789012:components:com.x:versions:1.0.2"
    )


# -- on the emulator: a DeepLens that is also a Greengrass V2 core ---------------------------------


def _upload_function(aws: dict[str, Any], model_s3_uri: str) -> str:
    bucket = model_s3_uri.split("/")[2]
    key = f"deploy/functions/deeplens-inference-{uuid.uuid4().hex[:6]}-1.zip"
    aws["s3"].put_object(Bucket=bucket, Key=key, Body=lambda_package.build_deployment_zip())
    return f"s3://{bucket}/{key}"


@pytest.fixture
def v2_request(aws, deployable, new_request, register_deeplens) -> Any:
    """A registered DeepLens (a V2 core), a repacked model, the function's zip, and the request."""

    def make(**changes: Any) -> Any:
        device = register_deeplens()
        return device, new_request(
            device.thing_name,
            model_s3_uri=deployable["model_s3_uri"],
            lambda_version_arn=deployable["lambda_version_arn"],
            function_s3_uri=_upload_function(aws, deployable["model_s3_uri"]),
            **changes,
        )

    return make


def deployer_for(aws: dict[str, Any]) -> gg2.GreengrassV2Deployer:
    return gg2.GreengrassV2Deployer(aws["greengrassv2"], aws["iot"], component_poll_interval=0.1)


def test_deploy_waits_for_the_component_then_the_device_succeeds(aws, v2_request, final_status) -> None:
    device, request = v2_request()
    deployer = deployer_for(aws)
    handle = deployer.deploy(request)
    name, version = handle.details["component"], handle.details["component_version"]
    arn = gg2.component_version_arn(device.thing_arn, name, version)
    assert aws["greengrassv2"].describe_component(arn=arn)["status"]["componentState"] == "DEPLOYABLE"
    assert handle.details["target_arn"] == device.thing_arn
    deployment = aws["greengrassv2"].get_deployment(deploymentId=handle.deployment_id)
    assert deployment["components"] == {name: {"componentVersion": version}}
    status = final_status(deployer, handle)
    assert (status.state, status.raw_status) == ("Success", "COMPLETED")


def test_a_retry_reattaches_and_creates_nothing(aws, v2_request, slow_device) -> None:
    device, request = v2_request()
    deployer = deployer_for(aws)
    first = deployer.deploy(request)
    again = deployer.deploy(request)
    assert again.deployment_id == first.deployment_id
    listed = aws["greengrassv2"].list_deployments(targetArn=device.thing_arn, historyFilter="ALL")
    assert [d["deploymentId"] for d in listed["deployments"]] == [first.deployment_id]


def test_a_failed_deployment_is_replaced_on_retry(aws, v2_request, final_status) -> None:
    """The device refuses a model without deploy graph; a retry deploys again, never re-attaches."""
    _, request = v2_request()
    bucket = request.model_s3_uri.split("/")[2]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("model_algo_1-symbol.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    aws["s3"].put_object(Bucket=bucket, Key="repacked/training-only.tar.gz", Body=buffer.getvalue())
    request = request.__class__(
        **{**request.__dict__, "model_s3_uri": f"s3://{bucket}/repacked/training-only.tar.gz"}
    )
    deployer = deployer_for(aws)
    first = deployer.deploy(request)
    failed = final_status(deployer, first)
    assert failed.state == "Failure"
    assert "holds no deploy_*-symbol.json" in failed.describe()
    assert "[errorTypes] USER_COMPONENT_ERROR" in failed.describe()
    again = deployer.deploy(request)
    assert again.deployment_id != first.deployment_id


def test_a_thing_that_is_no_greengrass_v2_core_is_refused_first(aws, register_deeplens, new_request) -> None:
    device = register_deeplens(greengrass_v2=False)
    request = new_request(device.thing_name, function_s3_uri=FUNCTION_ZIP)
    with pytest.raises(LookupError, match="is not a Greengrass V2 core device"):
        deployer_for(aws).deploy(request)
    assert aws["greengrassv2"].list_deployments(targetArn=device.thing_arn)["deployments"] == []
    with pytest.raises(LookupError, match="is not a Greengrass V2 core device"):
        deployer_for(aws).status(DeploymentHandle("greengrass-v2", "dep-1", device.thing_name))


def test_an_unknown_thing_is_a_clear_error(aws, new_request) -> None:
    with pytest.raises(LookupError, match="IoT thing 'deeplens_nowhere' does not exist"):
        deployer_for(aws).deploy(new_request("deeplens_nowhere", function_s3_uri=FUNCTION_ZIP))
