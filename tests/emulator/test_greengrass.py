"""The simulated DeepLens applies Greengrass V1 deployments and reports what it misses."""

import io
import time
import zipfile

import boto3
import pytest

from emulator.extension.greengrass import check_model_archive
from emulator.seed import seed_demo_account
from tests.emulator.helpers import tar_gz as _tar

REGION = "us-east-1"


@pytest.fixture(scope="module")
def device(emulator):
    account = seed_demo_account(emulator.url, region=REGION, bucket="deeplens-gg-test")
    clients = {
        s: boto3.client(s, endpoint_url=emulator.url, region_name=REGION)
        for s in ("s3", "lambda", "greengrass")
    }
    clients["s3"].put_object(
        Bucket=account.bucket,
        Key="good.tar.gz",
        Body=_tar({"deploy_m-symbol.json": b"{}", "deploy_m-0000.params": b"x"}),
    )
    clients["s3"].put_object(
        Bucket=account.bucket, Key="bad.tar.gz", Body=_tar({"model_algo_1-symbol.json": b"{}"})
    )

    def function(name, with_sdk=True):
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("lambda_function.py", "def function_handler(event, context):\n    return None\n")
            if with_sdk:  # AWS's V1 packaging guide: the greengrasssdk folder at the zip's root
                archive.writestr("greengrasssdk/__init__.py", "")
        created = clients["lambda"].create_function(
            FunctionName=name,
            Runtime="python3.12",  # what Lambda accepts; the core runs python3.7 (the override)
            Role=account.lambda_role_arn,
            Handler="lambda_function.function_handler",
            Code={"ZipFile": code.getvalue()},
        )
        return created, clients["lambda"].publish_version(FunctionName=name)

    fn, version = function("deeplens-gg-test")
    _, no_sdk = function("deeplens-gg-test-no-sdk", with_sdk=False)
    group = clients["greengrass"].get_group(GroupId=account.group_id)
    core = clients["greengrass"].get_group_version(
        GroupId=account.group_id, GroupVersionId=group["LatestVersion"]
    )["Definition"]["CoreDefinitionVersionArn"]
    return {
        "account": account,
        "core": core,
        "fn": fn,
        "version_arn": version["FunctionArn"],
        "no_sdk_version_arn": no_sdk["FunctionArn"],
        **clients,
    }


def deploy(device, model_key, function_arn, token=None, runtime_override="python3.7"):
    gg, bucket = device["greengrass"], device["account"].bucket
    functions = gg.create_function_definition(
        InitialVersion={
            "Functions": [
                {
                    "Id": "inference",
                    "FunctionArn": function_arn,
                    "FunctionConfiguration": {
                        "MemorySize": 65536,
                        "Timeout": 30,
                        "Pinned": True,
                        **({"FunctionRuntimeOverride": runtime_override} if runtime_override else {}),
                    },
                }
            ]
        }
    )
    resources = gg.create_resource_definition(
        InitialVersion={
            "Resources": [
                {
                    "Id": "model",
                    "Name": "model",
                    "ResourceDataContainer": {
                        "S3MachineLearningModelResourceData": {
                            "S3Uri": f"s3://{bucket}/{model_key}",
                            "DestinationPath": "/opt/awscam/artifacts",
                        }
                    },
                }
            ]
        }
    )
    version = gg.create_group_version(
        GroupId=device["account"].group_id,
        CoreDefinitionVersionArn=device["core"],
        FunctionDefinitionVersionArn=functions["LatestVersionArn"],
        ResourceDefinitionVersionArn=resources["LatestVersionArn"],
    )
    extra = {"AmznClientToken": token} if token else {}
    return gg.create_deployment(
        GroupId=device["account"].group_id,
        GroupVersionId=version["Version"],
        DeploymentType="NewDeployment",
        **extra,
    )["DeploymentId"]


def final_status(device, deployment_id, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = device["greengrass"].get_deployment_status(
            GroupId=device["account"].group_id, DeploymentId=deployment_id
        )
        if status["DeploymentStatus"] in ("Success", "Failure"):
            return status
        time.sleep(0.1)
    raise AssertionError("deployment never finished")


def test_good_deployment_succeeds(device):
    deployment = deploy(device, "good.tar.gz", device["version_arn"])
    assert (
        device["greengrass"].get_deployment_status(
            GroupId=device["account"].group_id, DeploymentId=deployment
        )["DeploymentStatus"]
        == "InProgress"
    )
    assert final_status(device, deployment)["DeploymentStatus"] == "Success"


@pytest.mark.parametrize(
    ("model", "function", "reason"),
    [
        ("bad.tar.gz", "version", "no deploy_*-symbol.json"),
        ("missing.tar.gz", "version", "cannot download the model"),
        ("good.tar.gz", "latest", "not $LATEST"),
    ],
)
def test_device_failure_reasons(device, model, function, reason):
    arn = device["version_arn"] if function == "version" else device["fn"]["FunctionArn"] + ":$LATEST"
    status = final_status(device, deploy(device, model, arn))
    assert status["DeploymentStatus"] == "Failure"
    assert reason in status["ErrorMessage"]


def test_the_core_runs_only_python37_functions_that_carry_greengrasssdk(device):
    status = final_status(device, deploy(device, "good.tar.gz", device["version_arn"], runtime_override=None))
    assert status["DeploymentStatus"] == "Failure"
    assert (
        "would run as python3.12" in status["ErrorMessage"]
        and "FunctionRuntimeOverride" in status["ErrorMessage"]
    )
    status = final_status(device, deploy(device, "good.tar.gz", device["no_sdk_version_arn"]))
    assert status["DeploymentStatus"] == "Failure"
    assert "no greengrasssdk/ at its root" in status["ErrorMessage"]


def test_client_token_makes_create_deployment_idempotent(device):
    first = deploy(device, "good.tar.gz", device["version_arn"], token="run-1")
    group_id = device["account"].group_id
    latest = device["greengrass"].get_group(GroupId=group_id)["LatestVersion"]
    again = device["greengrass"].create_deployment(
        GroupId=group_id, GroupVersionId=latest, DeploymentType="NewDeployment", AmznClientToken="run-1"
    )
    assert again["DeploymentId"] == first


def test_check_model_archive():
    assert (
        check_model_archive(_tar({"a/deploy_x-symbol.json": b"", "a/deploy_x-0000.params": b""}), "u")
        == "deploy_x"
    )
    with pytest.raises(ValueError, match="not deploy_x-0000.params"):
        check_model_archive(_tar({"deploy_x-symbol.json": b""}), "u")
    with pytest.raises(ValueError, match="not a gzip tar"):
        check_model_archive(b"nope", "u")


def test_after_its_end_of_support_greengrass_v1_refuses_every_call(emulator, monkeypatch):
    """AWS: "After October 7th, 2026, you will no longer be able to access the AWS IoT Greengrass V1
    resources." The emulator's default says the same; the tests' server keeps the legacy API."""
    from botocore.exceptions import ClientError

    from emulator.settings import EmulatorSettings

    assert EmulatorSettings().greengrass_v1 == "ended"
    monkeypatch.setattr(emulator.settings, "greengrass_v1", "ended")
    greengrass = boto3.client("greengrass", endpoint_url=emulator.url, region_name=REGION)
    for call in (greengrass.list_groups, lambda: greengrass.get_group(GroupId="any")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "BadRequestException"
        assert "end of support on October 7th, 2026" in err.value.response["Error"]["Message"]
    # Greengrass V2, on the same endpoint, still answers.
    boto3.client("greengrassv2", endpoint_url=emulator.url, region_name=REGION).list_core_devices()
    # and a demo account can still be seeded: its DeepLens simply has no V1 group.
    account = seed_demo_account(emulator.url, region=REGION, bucket="deeplens-gg-ended")
    assert account.group_id == "" and account.thing_name.startswith("deeplens_")
