"""CreateModel refuses a name already taken, as SageMaker does (moto replaced the model)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from deeplens_pipeline.training import object_detection_image
from emulator.seed import ensure_role

REGION = "us-east-1"


@pytest.fixture(scope="module")
def sm(emulator):
    return boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)


@pytest.fixture(scope="module")
def role(emulator) -> str:
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name=REGION)
    return ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")


def _create(sm, role: str, name: str, artifact: str) -> dict:
    return sm.create_model(
        ModelName=name,
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": object_detection_image(REGION), "ModelDataUrl": artifact},
    )


def test_a_second_create_model_with_the_same_name_is_refused_and_the_first_model_stays(sm, role):
    first = _create(sm, role, "deeplens-names-once", "s3://deeplens-names/a/model.tar.gz")
    with pytest.raises(ClientError) as err:
        _create(sm, role, "deeplens-names-once", "s3://deeplens-names/b/model.tar.gz")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"] == (
        f'Cannot create already existing model "{first["ModelArn"]}".'
    )
    described = sm.describe_model(ModelName="deeplens-names-once")
    assert described["PrimaryContainer"]["ModelDataUrl"] == "s3://deeplens-names/a/model.tar.gz"


def test_another_name_is_created(sm, role):
    _create(sm, role, "deeplens-names-a", "s3://deeplens-names/a/model.tar.gz")
    _create(sm, role, "deeplens-names-b", "s3://deeplens-names/a/model.tar.gz")
    names = {m["ModelName"] for m in sm.list_models(NameContains="deeplens-names-")["Models"]}
    assert {"deeplens-names-a", "deeplens-names-b"} <= names
