"""The emulator's model registry refuses what SageMaker refuses, and keeps what SageMaker keeps.

Each rule has a request it refuses and the pipeline's own request (``registry.register_request``)
that passes. The rules come from the SageMaker API model (botocore) and reference: see
include/emulator/extension/model_registry.py.
"""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from deeplens_pipeline import registry

REGION = "us-east-1"
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:1"


@pytest.fixture
def sm(emulator):
    return boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)


@pytest.fixture
def group(sm) -> str:
    name = f"deeplens-models-{uuid.uuid4().hex[:12]}"
    sm.create_model_package_group(ModelPackageGroupName=name)
    return name


def ours(group: str, token: str = "deeplens-register-0123456789", **overrides) -> dict:
    metadata = registry.version_metadata(
        classes=["blue_box", "yellow box"],
        base_network="resnet-50",
        image_shape=300,
        run_id="manual__2026-11-26T07:00:00+00:00",
        run_token="0123456789",
        training_job="deeplens-train-0123456789",
        holdout_map=0.5,
        per_class_ap={"blue_box": 0.6, "yellow box": 0.4},
    )
    request = registry.register_request(
        group=group,
        image=IMAGE,
        model_artifact="s3://deeplens-x/output/model.tar.gz",
        metrics_uri="s3://deeplens-x/evaluation/run/candidate.json",
        metadata=metadata,
        token=token,
        description="test",
    )
    return {**request, **overrides}


def refused(call, match: str) -> None:
    with pytest.raises(ClientError) as error:
        call()
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert match in error.value.response["Error"]["Message"], error.value.response["Error"]["Message"]


def test_a_group_name_already_taken_is_refused(sm, group) -> None:
    refused(
        lambda: sm.create_model_package_group(ModelPackageGroupName=group),
        "Model Package Group already exists",
    )
    assert sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupName"] == group


def test_a_version_needs_its_group(sm) -> None:
    refused(lambda: sm.create_model_package(**ours("deeplens-models-missing")), "does not exist")


def test_an_unknown_approval_status_is_refused(sm, group) -> None:
    refused(lambda: sm.create_model_package(**ours(group, ModelApprovalStatus="Accepted")), "Approved")
    arn = sm.create_model_package(**ours(group))["ModelPackageArn"]
    refused(
        lambda: sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="OK"),
        "PendingManualApproval",
    )


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"classes": "blue_box,yellow_box"}, "regular expression pattern"),  # "," is not admitted
        ({"classes": '["a"]'}, "regular expression pattern"),
        ({"k" * 129: "v"}, "length between 1 and 128"),
        ({"k": "v" * 257}, "length between 1 and 256"),
        ({f"k{i}": "v" for i in range(51)}, "less than or equal to 50"),
    ],
)
def test_customer_metadata_sagemaker_refuses_is_refused(sm, group, metadata, match) -> None:
    refused(lambda: sm.create_model_package(**ours(group, CustomerMetadataProperties=metadata)), match)
    arn = sm.create_model_package(**ours(group))["ModelPackageArn"]
    refused(lambda: sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties=metadata), match)


def test_our_request_passes_and_a_version_starts_pending(sm, group) -> None:
    arn = sm.create_model_package(**ours(group))["ModelPackageArn"]
    description = sm.describe_model_package(ModelPackageName=arn)
    assert description["ModelApprovalStatus"] == registry.PENDING
    spec = description["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == ["image/jpeg"]
    assert spec["SupportedResponseMIMETypes"] == ["application/json"]
    version = registry.registered_model(description)
    assert version.classes == ["blue_box", "yellow box"] and version.holdout_map == 0.5
    # Without ModelApprovalStatus a versioned package is PendingManualApproval all the same.
    request = ours(group, token="deeplens-register-other")
    del request["ModelApprovalStatus"]
    other = sm.create_model_package(**request)["ModelPackageArn"]
    assert sm.describe_model_package(ModelPackageName=other)["ModelApprovalStatus"] == registry.PENDING


def test_the_same_client_token_registers_once(sm, group) -> None:
    first = sm.create_model_package(**ours(group))["ModelPackageArn"]
    again = sm.create_model_package(**ours(group))["ModelPackageArn"]
    other = sm.create_model_package(**ours(group, token="deeplens-register-another"))["ModelPackageArn"]
    assert again == first != other
    versions = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert sorted(v["ModelPackageArn"] for v in versions) == sorted({first, other})


def test_an_approval_keeps_the_versions_metadata_and_a_long_reason_is_refused(sm, group) -> None:
    arn = sm.create_model_package(**ours(group))["ModelPackageArn"]
    before = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    sm.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Rejected", ApprovalDescription="too weak"
    )
    # As the console or `aws sagemaker update-model-package --model-approval-status Approved` does.
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    after = sm.describe_model_package(ModelPackageName=arn)
    assert after["CustomerMetadataProperties"] == before
    assert after["ApprovalDescription"] == "too weak"  # not erased by an update that leaves it out
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"note": "kept"})
    merged = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert merged == {**before, "note": "kept"}
    refused(
        lambda: sm.update_model_package(ModelPackageArn=arn, ApprovalDescription="x" * 1025),
        "less than or equal to 1024",
    )
    assert registry.current_model(sm, group).arn == arn
