"""A registered DeepLens on the emulator: IoT thing, certificate, Greengrass V1 group with that core.

The emulator (moto + the project's extension, ``tests/conftest.py``) plays the device: a
deployment ends in Success when its Lambda version and model archive exist, else in Failure
with the reason, after ``deployment_delay_seconds``.
"""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from deeplens_pipeline import lambda_package
from deeplens_pipeline.deploy.base import (
    DeploymentHandle,
    DeploymentRequest,
    DeploymentStatus,
    DeviceDeployer,
)
from deeplens_pipeline.deploy.inference_settings import InferenceSettings

REGION = "eu-west-1"  # apart from the other tests' default region
ACCOUNT = "123456789012"


def make_request(thing_name: str, **changes: Any) -> DeploymentRequest:
    """A deployment request for ``thing_name`` with the pipeline's usual values."""
    values: dict[str, Any] = {
        "thing_name": thing_name,
        "model_s3_uri": "s3://deeplens-chocolate/output/deeplens-train-abc/output/model-deploy.tar.gz",
        "lambda_version_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:deeplens-inference:3",
        "settings": InferenceSettings(
            model_name="deploy_model_algo_1", labels=("blue_box", "yellow_box"), image_shape=512
        ),
        "run_token": "0123456789",
        **changes,
    }
    return DeploymentRequest(**values)


@pytest.fixture
def new_request() -> Callable[..., DeploymentRequest]:
    """``make_request`` as a fixture (test modules cannot import conftest by name)."""
    return make_request


@pytest.fixture
def slow_device(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated device takes 20 s to apply a deployment: status stays InProgress meanwhile."""
    monkeypatch.setattr(emulator.settings, "deployment_delay_seconds", 20.0)


def model_archive(model_name: str = "deploy_model_algo_1") -> bytes:
    """A model.tar.gz laid out as the repack stage writes it (the emulator checks the names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (
            (f"{model_name}-symbol.json", b'{"nodes": []}'),
            (f"{model_name}-0000.params", b"\0" * 64),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def deployable(aws: dict[str, Any]) -> dict[str, str]:
    """A published Lambda version and a repacked model in a ``deeplens-`` bucket."""
    bucket = f"deeplens-deploy-{uuid.uuid4().hex[:8]}"
    aws["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    aws["s3"].put_object(Bucket=bucket, Key="repacked/model.tar.gz", Body=model_archive())
    # a Lambda function's role must trust lambda.amazonaws.com
    role = aws["iam"].create_role(
        RoleName=f"AWSDeepLensLambdaRole-{uuid.uuid4().hex[:8]}",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
    )
    spec = lambda_package.FunctionSpec(
        name=f"deeplens-inference-{uuid.uuid4().hex[:8]}", role_arn=role["Role"]["Arn"]
    )
    published = lambda_package.publish_inference_function(
        aws["lambda"], spec, lambda_package.build_deployment_zip()
    )
    return {
        "model_s3_uri": f"s3://{bucket}/repacked/model.tar.gz",
        "lambda_version_arn": published.version_arn,
    }


def wait_final(deployer: DeviceDeployer, handle: DeploymentHandle, timeout: float = 15.0) -> DeploymentStatus:
    """Poll ``deployer.status`` until the simulated device answers."""
    deadline = time.monotonic() + timeout
    while True:
        status = deployer.status(handle)
        if status.is_final or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


@pytest.fixture
def final_status() -> Callable[..., DeploymentStatus]:
    """``wait_final`` as a fixture."""
    return wait_final
