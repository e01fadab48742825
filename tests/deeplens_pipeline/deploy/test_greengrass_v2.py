"""Greengrass V2: the recipe and requests, validated against botocore's service model.

moto has no Greengrass V2, so the calls go through real boto3 clients with botocore's Stubber:
every request is serialised and validated against the greengrassv2 model, every scripted
response against its output shape.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import ParamValidator

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
        "python3 -u {artifacts:decompressedPath}/deeplens-inference-3/deeplens_inference.py"
    )
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


def no_deployment_yet(stub: Stubber) -> None:
    stub.add_response(
        "list_deployments", {"deployments": []}, {"targetArn": THING_ARN, "historyFilter": "LATEST_ONLY"}
    )


def current_deployment(stub: Stubber, deployment_id: str, components: dict) -> None:
    """The device's latest deployment is ``deployment_id``, deploying ``components``."""
    stub.add_response(
        "list_deployments",
        {"deployments": [{"deploymentId": deployment_id, "targetArn": THING_ARN, "isLatestForTarget": True}]},
        {"targetArn": THING_ARN, "historyFilter": "LATEST_ONLY"},
    )
    stub.add_response(
        "get_deployment",
        {"deploymentId": deployment_id, "deploymentStatus": "ACTIVE", "components": components},
        {"deploymentId": deployment_id},
    )


def test_deploy_creates_component_then_deployment(clients, new_request) -> None:
    greengrass, iot = clients
    request = new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
    deployer = gg2.GreengrassV2Deployer(greengrass, iot)
    create_component, create_deployment = deployer.build_requests(request, THING_ARN)
    name, version = (
        next(iter(create_deployment["components"].items()))[0],
        json.loads(create_component["inlineRecipe"])["ComponentVersion"],
    )
    with Stubber(iot) as iot_stub, Stubber(greengrass) as stub:
        iot_stub.add_response("describe_thing", {"thingArn": THING_ARN}, {"thingName": "deeplens_abc"})
        no_deployment_yet(stub)
        stub.add_response(
            "create_component_version",
            {
                "componentName": name,
                "componentVersion": version,
                "creationTimestamp": NOW,
                "status": {"componentState": "DEPLOYABLE"},
            },
            create_component,
        )
        stub.add_response("create_deployment", {"deploymentId": "dep-123"}, create_deployment)
        handle = deployer.deploy(request)
        stub.assert_no_pending_responses()
    assert handle.to_dict() == {
        "method": "greengrass-v2",
        "deployment_id": "dep-123",
        "target": "deeplens_abc",
        "group_id": None,
        "details": {"component": name, "component_version": version, "target_arn": THING_ARN},
    }


def test_existing_component_version_is_reused(clients, new_request) -> None:
    greengrass, iot = clients
    request = new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
    deployer = gg2.GreengrassV2Deployer(greengrass, iot)
    with Stubber(iot) as iot_stub, Stubber(greengrass) as stub:
        iot_stub.add_response("describe_thing", {"thingArn": THING_ARN}, {"thingName": "deeplens_abc"})
        no_deployment_yet(stub)
        stub.add_client_error("create_component_version", "ConflictException", http_status_code=409)
        stub.add_response(
            "create_deployment",
            {"deploymentId": "dep-9"},
            {
                **dict.fromkeys(
                    ["targetArn", "deploymentName", "components", "deploymentPolicies", "clientToken"], ANY
                )
            },
        )
        assert deployer.deploy(request).deployment_id == "dep-9"


def test_unknown_thing_is_a_clear_error(clients, new_request) -> None:
    greengrass, iot = clients
    with Stubber(iot) as iot_stub:
        iot_stub.add_client_error("describe_thing", "ResourceNotFoundException", http_status_code=404)
        with pytest.raises(LookupError, match="IoT thing 'deeplens_abc' does not exist"):
            gg2.GreengrassV2Deployer(greengrass, iot).deploy(
                new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
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


def test_retry_reattaches_to_the_device_deployment_of_this_version(clients, new_request) -> None:
    """Past Greengrass V2's 8-hour client token memory, a retry still creates nothing."""
    greengrass, iot = clients
    request = new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
    deployer = gg2.GreengrassV2Deployer(greengrass, iot)
    _, create_deployment = deployer.build_requests(request, THING_ARN)
    ours = create_deployment["components"]
    with Stubber(iot) as iot_stub, Stubber(greengrass) as stub:
        iot_stub.add_response("describe_thing", {"thingArn": THING_ARN}, {"thingName": "deeplens_abc"})
        current_deployment(stub, "dep-1", ours)
        stub.add_response(
            "list_effective_deployments", effective("IN_PROGRESS"), {"coreDeviceThingName": "deeplens_abc"}
        )
        handle = deployer.deploy(request)
        stub.assert_no_pending_responses()  # no create call was made
    assert handle.deployment_id == "dep-1"


def test_a_failed_or_other_deployment_is_replaced(clients, new_request) -> None:
    greengrass, iot = clients
    request = new_request("deeplens_abc", function_s3_uri=FUNCTION_ZIP)
    deployer = gg2.GreengrassV2Deployer(greengrass, iot)
    _, first_try = deployer.build_requests(request, THING_ARN)
    ours = first_try["components"]
    other = {"com.example.other": {"componentVersion": "1.0.0"}}
    for deployment_id, components, device_status in (("dep-1", ours, "FAILED"), ("dep-7", other, None)):
        _, expected = deployer.build_requests(request, THING_ARN, deployment_id)
        assert expected["clientToken"] != first_try["clientToken"]  # never answered with an older one
        with Stubber(iot) as iot_stub, Stubber(greengrass) as stub:
            iot_stub.add_response("describe_thing", {"thingArn": THING_ARN}, {"thingName": "deeplens_abc"})
            current_deployment(stub, deployment_id, components)
            if device_status:
                stub.add_response(
                    "list_effective_deployments",
                    effective(device_status),
                    {"coreDeviceThingName": "deeplens_abc"},
                )
            stub.add_client_error("create_component_version", "ConflictException", http_status_code=409)
            stub.add_response("create_deployment", {"deploymentId": "dep-new"}, expected)
            assert deployer.deploy(request).deployment_id == "dep-new"
            stub.assert_no_pending_responses()
