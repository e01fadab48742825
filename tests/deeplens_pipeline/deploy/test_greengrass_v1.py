"""Greengrass V1 deployment against the emulator, whose simulated DeepLens applies deployments."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from deeplens_pipeline.deploy import greengrass_v1 as gg
from deeplens_pipeline.deploy.base import DeploymentHandle, idempotency_token

ACCOUNT = "123456789012"  # moto's default account


def definition(aws: dict[str, Any], arn: str) -> dict[str, Any]:
    kind, definition_id, version_id = gg.parse_definition_arn(arn)
    stem = {"functions": "Function", "resources": "Resource", "subscriptions": "Subscription"}[kind]
    getter = getattr(aws["greengrass"], f"get_{stem.lower()}_definition_version")
    return getter(**{f"{stem}DefinitionId": definition_id, f"{stem}DefinitionVersionId": version_id})[
        "Definition"
    ]


def latest_version(aws: dict[str, Any], group_id: str) -> dict[str, Any]:
    group = aws["greengrass"].get_group(GroupId=group_id)
    return aws["greengrass"].get_group_version(GroupId=group_id, GroupVersionId=group["LatestVersion"])


def test_deploy_builds_a_group_version_that_keeps_the_core(
    aws, register_deeplens, new_request, deployable, final_status
) -> None:
    device = register_deeplens(with_devices=True)
    other = register_deeplens()  # another DeepLens in the account is left alone
    request = new_request(device.thing_name, **deployable)
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])

    handle = deployer.deploy(request)

    assert handle.method == "greengrass-v1"
    assert handle.group_id == device.group_id
    assert handle.target == device.thing_name
    assert handle.details["reattached"] is False
    version = latest_version(aws, device.group_id)
    assert version["Version"] == handle.details["group_version_id"]
    assert version["Definition"]["CoreDefinitionVersionArn"] == device.core_definition_version_arn
    assert version["Definition"]["DeviceDefinitionVersionArn"] == device.device_definition_version_arn

    (function,) = definition(aws, version["Definition"]["FunctionDefinitionVersionArn"])["Functions"]
    assert function["FunctionArn"] == request.lambda_version_arn
    configuration = function["FunctionConfiguration"]
    assert configuration["Pinned"] is True
    assert configuration["MemorySize"] == 1536 * 1024
    assert configuration["Timeout"] == 25
    variables = configuration["Environment"]["Variables"]
    assert variables["DEEPLENS_MODEL_NAME"] == "deploy_model_algo_1"
    assert json.loads(variables["DEEPLENS_LABELS"]) == ["blue_box", "yellow_box"]
    assert variables["DEEPLENS_IOT_TOPIC"] == f"$aws/things/{device.thing_name}/infer"
    policies = {
        p["ResourceId"]: p["Permission"] for p in configuration["Environment"]["ResourceAccessPolicies"]
    }
    assert policies == {
        "deeplens-model": "rw",
        "deeplens-volume-tmp": "rw",
        "deeplens-volume-opt-awscam-out": "ro",
        "deeplens-device-dev-dri-renderD128": "rw",
    }

    resources = {
        r["Id"]: r["ResourceDataContainer"]
        for r in definition(aws, version["Definition"]["ResourceDefinitionVersionArn"])["Resources"]
    }
    assert resources["deeplens-model"] == {
        "S3MachineLearningModelResourceData": {
            "S3Uri": request.model_s3_uri,
            "DestinationPath": "/opt/awscam/artifacts",
        }
    }
    assert set(policies) == set(resources)

    (subscription,) = definition(aws, version["Definition"]["SubscriptionDefinitionVersionArn"])[
        "Subscriptions"
    ]
    assert subscription == {
        "Id": "deeplens-inference-to-cloud",
        "Source": request.lambda_version_arn,
        "Subject": f"$aws/things/{device.thing_name}/infer",
        "Target": "cloud",
    }

    deployments = aws["greengrass"].list_deployments(GroupId=device.group_id)["Deployments"]
    assert [d["DeploymentId"] for d in deployments] == [handle.deployment_id]
    assert deployments[0]["DeploymentType"] == "NewDeployment"
    assert deployments[0]["GroupArn"].endswith(f"/versions/{version['Version']}")
    status = final_status(deployer, handle)
    assert status.state == "Success", status.describe()
    assert aws["greengrass"].list_deployments(GroupId=other.group_id)["Deployments"] == []


def test_retry_reattaches_instead_of_deploying_twice(
    aws, register_deeplens, new_request, slow_device
) -> None:
    device = register_deeplens()
    request = new_request(device.thing_name)
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    first = deployer.deploy(request)
    versions_before = aws["greengrass"].list_group_versions(GroupId=device.group_id)["Versions"]
    functions_before = len(aws["greengrass"].list_function_definitions()["Definitions"])

    second = deployer.deploy(request)

    assert deployer.status(first).state == "InProgress"
    assert second.deployment_id == first.deployment_id
    assert second.details["reattached"] is True
    assert second.details["group_version_id"] == first.details["group_version_id"]
    assert aws["greengrass"].list_group_versions(GroupId=device.group_id)["Versions"] == versions_before
    assert len(aws["greengrass"].list_function_definitions()["Definitions"]) == functions_before
    assert len(aws["greengrass"].list_deployments(GroupId=device.group_id)["Deployments"]) == 1


def test_a_failed_deployment_reports_why_and_is_not_reattached(
    aws, register_deeplens, new_request, final_status
) -> None:
    device = register_deeplens()
    missing = f"arn:aws:lambda:{aws['lambda'].meta.region_name}:{ACCOUNT}:function:deeplens-never-published:1"
    request = new_request(device.thing_name, lambda_version_arn=missing)
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    first = deployer.deploy(request)
    failed = final_status(deployer, first)
    assert failed.state == "Failure"
    assert failed.error_message == f"Lambda function {missing} does not exist"
    assert failed.error_details[0]["DetailedErrorMessage"] == failed.error_message

    second = deployer.deploy(request)

    assert second.deployment_id != first.deployment_id
    assert second.details["group_version_id"] == first.details["group_version_id"]
    assert second.details["reattached"] is False
    assert len(aws["greengrass"].list_deployments(GroupId=device.group_id)["Deployments"]) == 2


def test_a_successful_deployment_is_reattached(
    aws, register_deeplens, new_request, deployable, final_status
) -> None:
    device = register_deeplens()
    request = new_request(device.thing_name, **deployable)
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    first = deployer.deploy(request)
    assert final_status(deployer, first).state == "Success"
    again = deployer.deploy(request)
    assert (again.deployment_id, again.details["reattached"]) == (first.deployment_id, True)
    assert deployer.status(again).state == "Success"


def test_changed_model_makes_a_new_version_with_only_the_resources_changed(
    aws, register_deeplens, new_request
) -> None:
    device = register_deeplens()
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    first = deployer.deploy(new_request(device.thing_name))
    before = latest_version(aws, device.group_id)["Definition"]
    second = deployer.deploy(
        new_request(device.thing_name, model_s3_uri="s3://deeplens-chocolate/output/other/model.tar.gz")
    )
    after = latest_version(aws, device.group_id)["Definition"]
    assert second.deployment_id != first.deployment_id
    assert after["ResourceDefinitionVersionArn"] != before["ResourceDefinitionVersionArn"]
    assert after["FunctionDefinitionVersionArn"] == before["FunctionDefinitionVersionArn"]
    assert after["SubscriptionDefinitionVersionArn"] == before["SubscriptionDefinitionVersionArn"]
    assert after["CoreDefinitionVersionArn"] == before["CoreDefinitionVersionArn"]


def test_unknown_thing_and_no_group_are_clear_errors(aws, register_deeplens, new_request) -> None:
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    with pytest.raises(gg.GroupNotFoundError, match="IoT thing 'deeplens_missing' does not exist"):
        deployer.deploy(new_request("deeplens_missing"))
    registered = register_deeplens()
    lonely = "deeplens_without_group"
    aws["iot"].create_thing(thingName=lonely)
    with pytest.raises(
        gg.GroupNotFoundError, match="no Greengrass V1 group has thing 'deeplens_without_group'"
    ) as error:
        deployer.deploy(new_request(lonely))
    assert f"{registered.thing_name}-group ({registered.group_id}): cores [" in str(error.value)


def test_two_groups_with_the_device_need_a_group_id(aws, register_deeplens, new_request) -> None:
    device = register_deeplens()
    core = aws["greengrass"].create_core_definition(
        Name="second-core",
        InitialVersion={
            "Cores": [
                {
                    "Id": "again",
                    "ThingArn": device.thing_arn,
                    "CertificateArn": f"arn:aws:iot:{aws['iot'].meta.region_name}:123456789012:cert/abc",
                    "SyncShadow": True,
                }
            ]
        },
    )
    second = aws["greengrass"].create_group(
        Name="second-group", InitialVersion={"CoreDefinitionVersionArn": core["LatestVersionArn"]}
    )
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    with pytest.raises(gg.GroupNotFoundError, match="2 Greengrass V1 groups .* pass group_id"):
        deployer.find_group(device.thing_name)
    pinned = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"], group_id=second["Id"])
    assert pinned.find_group(device.thing_name).group_id == second["Id"]
    other = register_deeplens()
    wrong = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"], group_id=other.group_id)
    with pytest.raises(gg.GroupNotFoundError, match=f"group_id {other.group_id} was given"):
        wrong.find_group(device.thing_name)


def test_model_bucket_must_begin_with_deeplens(aws, register_deeplens, new_request) -> None:
    device = register_deeplens()
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    request = new_request(device.thing_name, model_s3_uri="s3://models/model.tar.gz")
    with pytest.raises(ValueError, match="model bucket 'models' must begin with 'deeplens'"):
        deployer.deploy(request)
    assert aws["greengrass"].list_deployments(GroupId=device.group_id)["Deployments"] == []


def test_status_surfaces_the_device_error() -> None:
    client = boto3.client("greengrass", region_name="us-east-1")
    handle = DeploymentHandle("greengrass-v1", "dep-1", "deeplens_x", "group-1")
    with Stubber(client) as stub:
        stub.add_response(
            "get_deployment_status",
            {
                "DeploymentStatus": "Failure",
                "DeploymentType": "NewDeployment",
                "ErrorMessage": "Lambda deeplens-inference:3 failed to start",
                "ErrorDetails": [
                    {"DetailedErrorCode": "GG-402", "DetailedErrorMessage": "resource not found"}
                ],
            },
            {"GroupId": "group-1", "DeploymentId": "dep-1"},
        )
        stub.add_response(
            "get_deployment_status",
            {"DeploymentStatus": "Building", "DeploymentType": "NewDeployment"},
            {"GroupId": "group-1", "DeploymentId": "dep-1"},
        )
        failed = gg.GreengrassV1Deployer(client).status(handle)
        building = gg.GreengrassV1Deployer(client).status(handle)
    assert failed.state == "Failure"
    assert failed.describe() == (
        "Failure: Lambda deeplens-inference:3 failed to start [GG-402] resource not found"
    )
    assert (building.state, building.is_final) == ("Building", False)


def test_every_create_call_carries_a_client_token(aws, register_deeplens, new_request) -> None:
    """The tokens are derived from the run token and the request: same retry, same token."""
    device = register_deeplens()
    request = new_request(device.thing_name)
    seen: list[tuple[str, str]] = []

    def record(params: dict, model, **kwargs) -> None:
        if model.name.startswith("Create"):
            seen.append((model.name, params.get("AmznClientToken")))

    aws["greengrass"].meta.events.register("provide-client-params.greengrass", record)
    try:
        gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"]).deploy(request)
    finally:
        aws["greengrass"].meta.events.unregister("provide-client-params.greengrass", record)
    # the deployer fills the settings' thing name (the topic) before building the definitions
    request = replace(request, settings=replace(request.settings, thing_name=device.thing_name))
    names = [name for name, _ in seen]
    assert names == [
        "CreateFunctionDefinition",
        "CreateResourceDefinition",
        "CreateSubscriptionDefinition",
        "CreateGroupVersion",
        "CreateDeployment",
    ]
    assert all(token for _, token in seen)
    # no Lambda client: the version's runtime is unknown, so the override is written
    function_token = idempotency_token(
        request.run_token,
        "functions-definition",
        gg.function_definition(request, gg.DeviceAccess(), "python3.7"),
    )
    assert seen[0][1] == function_token
    other_run = replace(request, run_token="fedcba9876")
    assert (
        idempotency_token(
            other_run.run_token,
            "functions-definition",
            gg.function_definition(other_run, gg.DeviceAccess(), "python3.7"),
        )
        != function_token
    )


def test_device_access_validation(new_request) -> None:
    with pytest.raises(ValueError, match="under /sys, /dev or /var"):
        gg.DeviceAccess(volumes=(("/var/log", "/var/log", "ro"),))
    with pytest.raises(ValueError, match="must be under /dev"):
        gg.DeviceAccess(devices=(("/tmp/x", "rw"),))
    with pytest.raises(ValueError, match="'ro' or 'rw'"):
        gg.DeviceAccess(devices=(("/dev/video0", "rwx"),))
    access = gg.DeviceAccess(devices=(("/dev/video0", "ro"),))
    request = new_request("deeplens_x")
    configuration = gg.function_definition(request, access)["Functions"][0]["FunctionConfiguration"]
    assert "FunctionRuntimeOverride" not in configuration
    assert {"ResourceId": "deeplens-device-dev-video0", "Permission": "ro"} in configuration["Environment"][
        "ResourceAccessPolicies"
    ]


# -- the runtime override: Lambda creates python3.13, the DeepLens's core runs python3.7 ---------


def test_runtime_override_is_the_device_runtime_unless_the_version_has_it() -> None:
    assert gg.DEVICE_RUNTIME == "python3.7"
    assert gg.runtime_override("python3.13") == "python3.7"
    assert gg.runtime_override("python3.12") == "python3.7"
    assert gg.runtime_override(None) == "python3.7"  # unknown: the core runs python3.7 regardless
    assert gg.runtime_override("python3.7") is None
    assert gg.runtime_override("python3.13", device_runtime="python3.8") == "python3.8"


@pytest.mark.parametrize("operation", ["CreateFunctionDefinition", "CreateFunctionDefinitionVersion"])
def test_function_definition_with_the_override_passes_botocore_validation(new_request, operation) -> None:
    """botocore's Greengrass model (FunctionConfiguration has FunctionRuntimeOverride) accepts it."""
    definition = gg.function_definition(new_request("deeplens_x"), gg.DeviceAccess(), "python3.7")
    (function,) = definition["Functions"]
    assert function["FunctionConfiguration"]["FunctionRuntimeOverride"] == "python3.7"
    model = boto3.session.Session().client("greengrass", region_name="us-east-1").meta.service_model
    shape = model.operation_model(operation).input_shape
    assert "FunctionRuntimeOverride" in model.shape_for("FunctionConfiguration").members
    params = (
        {"Name": "deeplens-functions", "InitialVersion": definition}
        if operation == "CreateFunctionDefinition"
        else {"FunctionDefinitionId": "abc", **definition}
    )
    validate_parameters(params, shape)  # raises ParamValidationError on any unknown or mistyped field
    with pytest.raises(ParamValidationError, match="FunctionRuntimeOverrid"):
        broken = json.loads(json.dumps(params).replace("FunctionRuntimeOverride", "FunctionRuntimeOverrid"))
        validate_parameters(broken, shape)


def test_a_function_created_on_a_newer_runtime_runs_as_python37_on_the_device(
    aws, register_deeplens, new_request, deployable, final_status
) -> None:
    """The version is python3.13 (read from Lambda): the group's function carries the override."""
    device = register_deeplens()
    request = new_request(device.thing_name, **deployable)
    created = aws["lambda"].get_function_configuration(FunctionName=request.lambda_version_arn)
    assert created["Runtime"] == "python3.13"
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"], lambda_client=aws["lambda"])

    handle = deployer.deploy(request)

    version = latest_version(aws, device.group_id)
    (function,) = definition(aws, version["Definition"]["FunctionDefinitionVersionArn"])["Functions"]
    assert function["FunctionConfiguration"]["FunctionRuntimeOverride"] == "python3.7"
    assert function["FunctionArn"] == request.lambda_version_arn
    assert final_status(deployer, handle).state == "Success"


def stubbed_lambda(answer: dict[str, Any] | None, arn: str) -> tuple[Any, Stubber]:
    client = boto3.client("lambda", region_name="eu-west-1")
    stub = Stubber(client)
    if answer is None:
        stub.add_client_error(
            "get_function_configuration", "ResourceNotFoundException", expected_params={"FunctionName": arn}
        )
    else:
        stub.add_response("get_function_configuration", answer, {"FunctionName": arn})
    return client, stub


def test_a_python37_version_gets_no_override(aws, register_deeplens, new_request) -> None:
    """A function published before Lambda refused python3.7 already is what the core runs."""
    device = register_deeplens()
    request = new_request(device.thing_name)
    client, stub = stubbed_lambda({"Runtime": "python3.7"}, request.lambda_version_arn)
    with stub:
        gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"], lambda_client=client).deploy(request)
        stub.assert_no_pending_responses()
    version = latest_version(aws, device.group_id)
    (function,) = definition(aws, version["Definition"]["FunctionDefinitionVersionArn"])["Functions"]
    assert "FunctionRuntimeOverride" not in function["FunctionConfiguration"]


def test_a_missing_version_is_left_for_the_device_to_report(new_request) -> None:
    request = new_request("deeplens_x")
    client, stub = stubbed_lambda(None, request.lambda_version_arn)
    with stub:
        deployer = gg.GreengrassV1Deployer(object(), lambda_client=client)
        assert deployer.function_runtime(request.lambda_version_arn) is None
    assert gg.GreengrassV1Deployer(object()).function_runtime(request.lambda_version_arn) is None


def test_a_rerun_after_another_deployment_puts_its_model_back(aws, register_deeplens, new_request) -> None:
    """A cleared task (same run token) re-run after another run deployed must deploy again.

    Create calls with the first attempt's client tokens would return its old group version and
    deployment (AWS and the emulator honour the tokens), and the device would keep the other model.
    """
    device = register_deeplens()
    deployer = gg.GreengrassV1Deployer(aws["greengrass"], aws["iot"])
    ours = new_request(device.thing_name)
    first = deployer.deploy(ours)
    theirs = new_request(
        device.thing_name,
        run_token="fedcba9876",
        model_s3_uri="s3://deeplens-chocolate/output/other/model.tar.gz",
    )
    other = deployer.deploy(theirs)

    again = deployer.deploy(ours)

    assert again.deployment_id not in (first.deployment_id, other.deployment_id)
    assert again.details["reattached"] is False
    latest = latest_version(aws, device.group_id)
    assert latest["Version"] == again.details["group_version_id"] != first.details["group_version_id"]
    resources = definition(aws, latest["Definition"]["ResourceDefinitionVersionArn"])["Resources"]
    model = next(r for r in resources if r["Id"] == "deeplens-model")
    assert model["ResourceDataContainer"]["S3MachineLearningModelResourceData"]["S3Uri"] == ours.model_s3_uri
    assert len(aws["greengrass"].list_deployments(GroupId=device.group_id)["Deployments"]) == 3
