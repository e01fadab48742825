"""The deployment interface's data: requests, handles, statuses and idempotency tokens."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from deeplens_pipeline.deploy import base
from deeplens_pipeline.deploy.greengrass_v1 import GreengrassV1Deployer
from deeplens_pipeline.deploy.greengrass_v2 import GreengrassV2Deployer
from deeplens_pipeline.deploy.ssh import SshDeployer, SshTarget


def test_every_deployer_implements_the_interface() -> None:
    deployers = [
        GreengrassV1Deployer(object()),
        GreengrassV2Deployer(object(), object()),
        SshDeployer(target=SshTarget(host="deeplens.local"), s3_client=None),
    ]
    assert [d.method for d in deployers] == list(base.METHODS)
    assert all(isinstance(d, base.DeviceDeployer) for d in deployers)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"thing_name": "deeplens abc"}, "not an IoT thing name"),
        ({"model_s3_uri": "/local/model.tar.gz"}, "model_s3_uri '/local/model.tar.gz' is not an s3://"),
        ({"model_s3_uri": "s3://deeplens-b/model-symbol.json"}, "must be the repacked model archive"),
        ({"model_s3_uri": "s3://deeplens-b/"}, "URI of an object"),
        (
            {"lambda_version_arn": "arn:aws:lambda:eu-west-1:123456789012:function:deeplens-x"},
            "published version",
        ),
        (
            {"lambda_version_arn": "arn:aws:lambda:eu-west-1:123456789012:function:deeplens-x:$LATEST"},
            "not \\$LATEST",
        ),
        ({"run_token": ""}, "run_token is empty"),
        ({"memory_mb": 16}, "32..8192"),
        ({"timeout_s": 0}, "1..900"),
        ({"function_s3_uri": "https://x/y.zip"}, "function_s3_uri"),
    ],
)
def test_bad_requests_name_the_parameter(new_request, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        new_request(**{"thing_name": "deeplens_abc", **changes})


def test_request_knows_the_function(new_request) -> None:
    request = new_request("deeplens_abc")
    assert (request.function_name, request.function_version) == ("deeplens-inference", "3")
    alias = new_request(
        "deeplens_abc", lambda_version_arn="arn:aws:lambda:eu-west-1:123456789012:function:deeplens-x:prod"
    )
    assert alias.function_version == "prod"


def test_handle_round_trips_through_json() -> None:
    handle = base.DeploymentHandle("greengrass-v1", "d-1", "deeplens_abc", "g-1", {"group_version_id": "v"})
    assert base.DeploymentHandle.from_dict(json.loads(json.dumps(handle.to_dict()))) == handle
    with pytest.raises(ValueError, match="method 'carrier-pigeon'"):
        base.DeploymentHandle.from_dict({**handle.to_dict(), "method": "carrier-pigeon"})


def test_status_round_trip_and_description() -> None:
    status = base.DeploymentStatus(
        "Failure",
        "could not start",
        ({"DetailedErrorCode": "GG-1", "DetailedErrorMessage": "no GPU"},),
        "Failure",
    )
    assert base.DeploymentStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status
    assert status.is_final
    assert status.describe() == "Failure: could not start [GG-1] no GPU"
    assert base.DeploymentStatus("InProgress", raw_status="QUEUED").describe() == "InProgress (QUEUED)"
    assert not base.DeploymentStatus("Building").is_final
    with pytest.raises(ValueError, match="'Done' is not one of"):
        base.DeploymentStatus("Done")


def test_idempotency_tokens() -> None:
    token = base.idempotency_token("run-1", "group-version", {"a": 1, "b": [2]})
    assert token == base.idempotency_token("run-1", "group-version", {"b": [2], "a": 1})
    assert token != base.idempotency_token("run-2", "group-version", {"a": 1, "b": [2]})
    assert token != base.idempotency_token("run-1", "deployment", {"a": 1, "b": [2]})
    assert token != base.idempotency_token("run-1", "group-version", {"a": 2, "b": [2]})
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,64}", token)
    with pytest.raises(ValueError, match="run_token is empty"):
        base.idempotency_token("", "x")


def test_split_s3_uri() -> None:
    assert base.split_s3_uri("s3://deeplens-b/a/b.tar.gz") == ("deeplens-b", "a/b.tar.gz")
    with pytest.raises(ValueError, match="thing 's3:/x' is not"):
        base.split_s3_uri("s3:/x", "thing")


def test_settings_thing_is_kept_separate_from_request(new_request) -> None:
    request = new_request("deeplens_abc")
    assert request.settings.thing_name is None
    assert replace(request.settings, thing_name="deeplens_abc").iot_topic == "$aws/things/deeplens_abc/infer"
