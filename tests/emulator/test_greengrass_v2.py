"""Greengrass V2 in the emulator, through boto3: component versions, deployments, a simulated core.

What each check stands for on AWS is written in ``emulator.extension.greengrass_v2``.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from emulator.seed import IAM_DIR, register_core_device, register_greengrass_v2_core
from tests.emulator.helpers import tar_gz as _tar

REGION = "ap-southeast-2"  # apart from the other tests' regions
TRUST_IOT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "credentials.iot.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("deeplens_inference.py", "print('inference')\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aws(emulator: Any) -> dict[str, Any]:
    return {
        name: boto3.client(name, endpoint_url=emulator.url, region_name=REGION)
        for name in ("greengrassv2", "s3", "iot", "iam")
    }


@pytest.fixture(scope="module")
def bucket(aws: dict[str, Any]) -> str:
    """A ``deeplens-`` bucket holding a good model, a model without deploy graph and a function zip."""
    name = f"deeplens-gg2-{uuid.uuid4().hex[:8]}"
    aws["s3"].create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    good = _tar({"deploy_m-symbol.json": b"{}", "deploy_m-0000.params": b"\0" * 8})
    aws["s3"].put_object(Bucket=name, Key="model.tar.gz", Body=good)
    aws["s3"].put_object(Bucket=name, Key="training.tar.gz", Body=_tar({"model_algo_1-symbol.json": b"{}"}))
    aws["s3"].put_object(Bucket=name, Key="function.zip", Body=_zip())
    return name


@pytest.fixture
def thing(aws: dict[str, Any]) -> dict[str, str]:
    name = f"deeplens_{uuid.uuid4().hex[:16]}"
    return {"name": name, "arn": aws["iot"].create_thing(thingName=name)["thingArn"]}


@pytest.fixture
def core(emulator: Any, thing: dict[str, str]) -> dict[str, str]:
    """A Greengrass V2 core as the seed registers one: the project's token exchange role and policy."""
    role_arn, alias = register_greengrass_v2_core(
        emulator.url,
        REGION,
        thing["name"],
        role_name=f"deeplens-tes-{uuid.uuid4().hex[:8]}",
        role_alias=f"deeplens-alias-{uuid.uuid4().hex[:8]}",
    )
    return {**thing, "role_arn": role_arn, "alias": alias}


def core_with_role(
    emulator: Any, aws: dict[str, Any], thing: dict[str, str], trust: dict, policy: dict | None
) -> dict[str, str]:
    """A core whose token exchange role has this trust policy and inline permission policy."""
    suffix = uuid.uuid4().hex[:8]
    role = aws["iam"].create_role(RoleName=f"tes-{suffix}", AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]
    if policy is not None:
        aws["iam"].put_role_policy(
            RoleName=role["RoleName"], PolicyName="access", PolicyDocument=json.dumps(policy)
        )
    aws["iot"].create_role_alias(roleAlias=f"alias-{suffix}", roleArn=role["Arn"])
    register_core_device(emulator.url, REGION, thing["name"], f"alias-{suffix}")
    return {**thing, "role_name": role["RoleName"]}


def recipe(bucket: str, version: str, model: str = "model.tar.gz", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": f"com.deeplens.test{uuid.uuid4().hex[:6]}",
        "ComponentVersion": version,
        "ComponentPublisher": "tests",
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {"Run": {"Script": "python3 -u {artifacts:decompressedPath}/function/x.py"}},
                "Artifacts": [
                    {"Uri": f"s3://{bucket}/{model}", "Unarchive": "NONE"},
                    {"URI": f"s3://{bucket}/function.zip", "Unarchive": "ZIP"},
                ],
            }
        ],
    }
    body.update(changes)
    return body


def create(gg: Any, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return gg.create_component_version(inlineRecipe=json.dumps(body).encode(), **extra)


def wait_component(gg: Any, arn: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = gg.describe_component(arn=arn)["status"]
        if status["componentState"] in ("DEPLOYABLE", "FAILED"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"{arn} was never validated")


def deployable(gg: Any, body: dict[str, Any]) -> dict[str, Any]:
    created = create(gg, body)
    assert wait_component(gg, created["arn"])["componentState"] == "DEPLOYABLE"
    return created


def deploy(gg: Any, target: dict[str, str], created: dict[str, Any], **extra: Any) -> str:
    return gg.create_deployment(
        targetArn=target["arn"],
        deploymentName="test",
        components={created["componentName"]: {"componentVersion": created["componentVersion"]}},
        **extra,
    )["deploymentId"]


def device_status(gg: Any, thing: str, deployment_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for effective in gg.list_effective_deployments(coreDeviceThingName=thing)["effectiveDeployments"]:
            if effective["deploymentId"] == deployment_id and effective["coreDeviceExecutionStatus"] not in (
                "QUEUED",
                "IN_PROGRESS",
            ):
                return effective
        time.sleep(0.1)
    raise AssertionError(f"deployment {deployment_id} never finished on {thing}")


def error_code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return err.value.response["Error"]["Code"]


# -- a correct component and deployment -------------------------------------------------------


def test_component_and_deployment_succeed_on_the_core(aws, bucket, core) -> None:
    gg = aws["greengrassv2"]
    created = create(gg, recipe(bucket, "1.0.0"))
    assert created["status"] == {"componentState": "REQUESTED", "message": "NONE", "errors": {}}
    assert created["arn"].endswith(f":components:{created['componentName']}:versions:1.0.0")
    assert wait_component(gg, created["arn"])["componentState"] == "DEPLOYABLE"
    described = gg.describe_component(arn=created["arn"])
    assert described["publisher"] == "tests"
    assert described["platforms"] == [{"name": "linux", "attributes": {"os": "linux"}}]
    stored = json.loads(gg.get_component(arn=created["arn"])["recipe"])
    artifacts = stored["Manifests"][0]["Artifacts"]
    assert all(a["Algorithm"] == "SHA-256" and a["Digest"] for a in artifacts)  # the service adds them

    deployment_id = deploy(gg, core, created)
    (effective,) = gg.list_effective_deployments(coreDeviceThingName=core["name"])["effectiveDeployments"]
    assert effective["coreDeviceExecutionStatus"] in ("QUEUED", "IN_PROGRESS")
    done = device_status(gg, core["name"], deployment_id)
    assert done["coreDeviceExecutionStatus"] == "COMPLETED"  # a thing target (a group's says SUCCEEDED)
    deployment = gg.get_deployment(deploymentId=deployment_id)
    assert deployment["isLatestForTarget"] and deployment["deploymentStatus"] == "ACTIVE"
    assert deployment["iotJobArn"].endswith(f":job/{deployment['iotJobId']}")
    assert gg.get_core_device(coreDeviceThingName=core["name"])["status"] == "HEALTHY"


def test_a_new_deployment_replaces_the_previous_one(aws, bucket, core) -> None:
    gg = aws["greengrassv2"]
    created = deployable(gg, recipe(bucket, "1.0.0"))
    first = deploy(gg, core, created)
    second = deploy(gg, core, created)
    latest = gg.list_deployments(targetArn=core["arn"], historyFilter="LATEST_ONLY")["deployments"]
    assert [(d["deploymentId"], d["revisionId"]) for d in latest] == [(second, "2")]
    every = gg.list_deployments(targetArn=core["arn"], historyFilter="ALL")["deployments"]
    assert {d["deploymentId"]: d["isLatestForTarget"] for d in every} == {first: False, second: True}


def test_client_tokens_and_existing_versions(aws, bucket, core) -> None:
    gg = aws["greengrassv2"]
    body = recipe(bucket, "2.1.0")
    created = create(gg, body, clientToken="token-1")
    assert create(gg, body, clientToken="token-1")["arn"] == created["arn"]  # the first answer again
    with pytest.raises(ClientError) as conflict:
        create(gg, body)
    assert error_code(conflict) == "ConflictException"
    assert conflict.value.response["Error"]["Message"] == (
        f"Component [{body['ComponentName']} : 2.1.0] for account [123456789012] already exists with state: "
        f"[{gg.describe_component(arn=created['arn'])['status']['componentState']}]"
    )
    wait_component(gg, created["arn"])
    first = deploy(gg, core, created, clientToken="deploy-1")
    assert deploy(gg, core, created, clientToken="deploy-1") == first


def test_yaml_recipes_are_accepted(aws, bucket) -> None:
    gg = aws["greengrassv2"]
    body = recipe(bucket, "1.0.0")
    created = gg.create_component_version(inlineRecipe=yaml.safe_dump(body).encode())
    assert wait_component(gg, created["arn"])["componentState"] == "DEPLOYABLE"
    assert gg.get_component(arn=created["arn"])["recipeOutputFormat"] == "YAML"


# -- recipes AWS refuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"RecipeFormatVersion": "2021-01-25"}, "RecipeFormatVersion '2021-01-25' is not supported"),
        ({"ComponentVersion": "1.0"}, "is not a semantic version"),
        ({"ComponentName": ""}, "ComponentName is required"),
        ({"Manifests": {"os": "linux"}}, "Manifests must be a list"),
        ({"Manifests": [{"Lifecycle": ["echo"]}]}, "Lifecycle must be an object or a string"),
        (
            {"Manifests": [{"Artifacts": [{"URI": "s3://b/a.zip", "Unarchive": "TAR"}]}]},
            "must be NONE or ZIP",
        ),
        (
            {"Manifests": [{"Artifacts": [{"URI": "s3://b/x/a.zip"}, {"URI": "s3://b/y/a.zip"}]}]},
            "unique file name",
        ),
    ],
)
def test_bad_recipes_are_refused(aws, bucket, changes, message) -> None:
    with pytest.raises(ClientError) as refused:
        create(aws["greengrassv2"], recipe(bucket, "1.0.0", **changes))
    assert error_code(refused) == "ValidationException"
    assert message in refused.value.response["Error"]["Message"]


def test_a_recipe_that_is_not_json_or_yaml_is_access_denied(aws) -> None:
    """AWS's troubleshooting page: "... is not authorized to perform: null" means a bad recipe."""
    with pytest.raises(ClientError) as refused:
        aws["greengrassv2"].create_component_version(inlineRecipe=b"{not: [json")
    assert error_code(refused) == "AccessDeniedException"
    assert refused.value.response["Error"]["Message"].endswith("is not authorized to perform: null")


def test_a_missing_artifact_is_refused_at_once(aws, bucket) -> None:
    with pytest.raises(ClientError) as refused:
        create(aws["greengrassv2"], recipe(bucket, "1.0.0", model="nowhere/model.tar.gz"))
    assert error_code(refused) == "ValidationException"
    assert refused.value.response["Error"]["Message"] == (
        f"Invalid Input: Encountered following errors in Artifacts: "
        f"{{s3://{bucket}/nowhere/model.tar.gz = Specified artifact resource cannot be accessed}}"
    )


def test_an_artifact_gone_before_validation_makes_the_component_failed(
    aws, bucket, emulator, monkeypatch
) -> None:
    monkeypatch.setattr(emulator.settings, "component_validation_seconds", 2.0)
    gg, s3 = aws["greengrassv2"], aws["s3"]
    s3.put_object(Bucket=bucket, Key="short-lived.tar.gz", Body=b"x")
    created = create(gg, recipe(bucket, "1.0.0", model="short-lived.tar.gz"))
    s3.delete_object(Bucket=bucket, Key="short-lived.tar.gz")
    status = wait_component(gg, created["arn"])
    uri = f"s3://{bucket}/short-lived.tar.gz"
    assert status["componentState"] == "FAILED"
    assert status["errors"] == {uri: "Specified artifact resource cannot be accessed"}
    assert uri in status["message"]


# -- deployments AWS refuses -------------------------------------------------------------------


def test_a_component_that_is_not_deployable_is_refused(aws, bucket, core, emulator, monkeypatch) -> None:
    monkeypatch.setattr(emulator.settings, "component_validation_seconds", 2.0)
    gg = aws["greengrassv2"]
    created = create(gg, recipe(bucket, "1.0.0"))
    with pytest.raises(ClientError) as refused:
        deploy(gg, core, created)
    assert error_code(refused) == "ValidationException"
    assert "is in state [REQUESTED], not [DEPLOYABLE]" in refused.value.response["Error"]["Message"]
    assert wait_component(gg, created["arn"])["componentState"] == "DEPLOYABLE"
    deploy(gg, core, created)


def test_unknown_targets_and_components_are_refused(aws, bucket, core) -> None:
    gg = aws["greengrassv2"]
    created = deployable(gg, recipe(bucket, "1.0.0"))
    with pytest.raises(ClientError) as no_thing:
        deploy(gg, {"arn": core["arn"] + "-nope"}, created)
    assert error_code(no_thing) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as no_version:
        deploy(gg, core, {**created, "componentVersion": "9.9.9"})
    assert error_code(no_version) == "ResourceNotFoundException"


def test_a_thing_that_is_no_core_device_has_no_effective_deployments(aws, thing) -> None:
    with pytest.raises(ClientError) as missing:
        aws["greengrassv2"].list_effective_deployments(coreDeviceThingName=thing["name"])
    assert error_code(missing) == "ResourceNotFoundException"


# -- the core device fails a deployment, with the reason --------------------------------------------


def failed(
    aws: dict[str, Any], bucket: str, target: dict[str, str], body: dict | None = None
) -> dict[str, Any]:
    gg = aws["greengrassv2"]
    created = deployable(gg, body or recipe(bucket, "1.0.0"))
    effective = device_status(gg, target["name"], deploy(gg, target, created))
    assert effective["coreDeviceExecutionStatus"] == "FAILED"
    return effective


ALLOW_LOCATION = {"Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": "arn:aws:s3:::deeplens-*"}


def test_a_role_without_s3_get_object_fails_the_deployment(emulator, aws, bucket, thing) -> None:
    policy = {"Version": "2012-10-17", "Statement": [ALLOW_LOCATION]}
    target = core_with_role(emulator, aws, thing, TRUST_IOT, policy)
    effective = failed(aws, bucket, target)
    assert "HeadObject returns 403 Access Denied" in effective["reason"]
    assert f"does not allow s3:GetObject on arn:aws:s3:::{bucket}/model.tar.gz" in effective["reason"]
    assert effective["statusDetails"] == {
        "errorStack": ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "S3_HEAD_OBJECT_ACCESS_DENIED"],
        "errorTypes": ["PERMISSION_ERROR"],
    }


def test_a_role_the_credentials_provider_cannot_assume_fails_the_deployment(
    emulator, aws, bucket, thing
) -> None:
    trust_lambda = json.loads(json.dumps(TRUST_IOT).replace("credentials.iot", "lambda"))
    policy = json.loads((IAM_DIR / "device-token-exchange-role.json").read_text())  # the project's own
    target = core_with_role(emulator, aws, thing, trust_lambda, policy)
    effective = failed(aws, bucket, target)
    assert "cannot assume role" in effective["reason"]
    assert "credentials.iot.amazonaws.com" in effective["reason"]


def test_a_missing_role_alias_fails_the_deployment(emulator, aws, bucket, thing) -> None:
    register_core_device(emulator.url, REGION, thing["name"], "no-such-alias")
    assert "role alias does not exist" in failed(aws, bucket, thing)["reason"]


def test_an_attached_deny_wins(emulator, aws, bucket, core) -> None:
    deny = aws["iam"].create_policy(
        PolicyName=f"deny-{uuid.uuid4().hex[:8]}",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
                ],
            }
        ),
    )["Policy"]["Arn"]
    aws["iam"].attach_role_policy(RoleName=core["role_arn"].rsplit("/", 1)[1], PolicyArn=deny)
    assert "HeadObject returns 403" in failed(aws, bucket, core)["reason"]


def test_a_model_without_deploy_graph_fails_the_deployment(aws, bucket, core) -> None:
    effective = failed(aws, bucket, core, recipe(bucket, "1.0.0", model="training.tar.gz"))
    assert "holds no deploy_*-symbol.json" in effective["reason"]
    assert effective["statusDetails"]["errorTypes"] == ["USER_COMPONENT_ERROR"]


def test_an_artifact_changed_after_creation_fails_the_deployment(aws, bucket, core) -> None:
    gg, s3 = aws["greengrassv2"], aws["s3"]
    s3.put_object(
        Bucket=bucket,
        Key="changing.tar.gz",
        Body=s3.get_object(Bucket=bucket, Key="model.tar.gz")["Body"].read(),
    )
    created = deployable(gg, recipe(bucket, "1.0.0", model="changing.tar.gz"))
    s3.put_object(
        Bucket=bucket,
        Key="changing.tar.gz",
        Body=_tar({"deploy_n-symbol.json": b"{}", "deploy_n-0000.params": b""}),
    )
    effective = device_status(gg, core["name"], deploy(gg, core, created))
    assert effective["coreDeviceExecutionStatus"] == "FAILED"
    assert "Integrity check for downloaded artifact failed" in effective["reason"]


def test_a_component_for_another_platform_fails_the_deployment(aws, bucket, core) -> None:
    body = recipe(bucket, "1.0.0")
    body["Manifests"][0]["Platform"] = {"os": "windows"}
    assert "doesn't claim platform" in failed(aws, bucket, core, body)["reason"]
