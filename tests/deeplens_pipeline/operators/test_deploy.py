"""Stage 7 operators and the deployment trigger, through an Airflow connection to the emulator.

The emulator's simulated DeepLens applies a Greengrass V1 deployment after a delay: Success when
the Lambda version and the model archive exist, else Failure with the reason. ``slow_device``
stretches the delay so a test can see the deployment InProgress.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import tarfile
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.exceptions import AirflowException, TaskDeferred

from deeplens_pipeline import lambda_package
from deeplens_pipeline.operators.deploy import DeployToDeviceOperator, PublishInferenceLambdaOperator
from deeplens_pipeline.triggers.greengrass import DeviceDeploymentTrigger
from emulator.seed import IAM_DIR, register_core_device
from tests.conftest import PIPELINE_ACCESS_KEY

REGION = "eu-west-1"
ACCOUNT = "123456789012"
CONN_ID = "deeplens_deploy_test"
RUN_ID = "manual__2026-01-02T03:04:05+00:00"
DAG_ID = "deeplens_object_detection"


@pytest.fixture
def connection(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow AWS connection whose endpoint_url is the moto server."""
    extra = {"endpoint_url": moto_endpoint, "region_name": REGION}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": PIPELINE_ACCESS_KEY, "password": "testing", "extra": extra}),
    )
    return CONN_ID


@pytest.fixture
def deeplens(register_deeplens: Any) -> dict[str, str]:
    """A registered DeepLens: thing ``deeplens_<id>``, core of a Greengrass V1 group."""
    device = register_deeplens()
    return {"thing_name": device.thing_name, "group_id": device.group_id}


@pytest.fixture
def role_arn(aws: dict[str, Any]) -> str:
    """The inference function's role: trusts lambda.amazonaws.com, as Lambda requires."""
    from emulator.seed import ensure_role

    return ensure_role(aws["iam"], f"AWSDeepLensLambdaRole-{uuid.uuid4().hex[:6]}", "lambda-execution-role")


class TaskInstanceDouble:
    """Records XCom pushes (the only task-instance call the operators make)."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))  # XCom values must be JSON


def context() -> dict[str, Any]:
    return {"run_id": RUN_ID, "dag_run": SimpleNamespace(dag_id=DAG_ID), "ti": TaskInstanceDouble()}


@pytest.fixture
def slow_device(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated device takes 20 s to apply a deployment: status stays InProgress meanwhile."""
    monkeypatch.setattr(emulator.settings, "deployment_delay_seconds", 20.0)


@pytest.fixture
def steady_device(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated device takes 1 s: long enough that the task surely defers first, on a busy machine."""
    monkeypatch.setattr(emulator.settings, "deployment_delay_seconds", 1.0)


@pytest.fixture
def model_s3_uri(aws: dict[str, Any]) -> str:
    """A repacked model archive (deploy graph and params at its root) in a ``deeplens-`` bucket."""
    bucket = f"deeplens-deploy-{uuid.uuid4().hex[:8]}"
    aws["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ("deploy_model_algo_1-symbol.json", "deploy_model_algo_1-0000.params"):
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"{}"))
    aws["s3"].put_object(Bucket=bucket, Key="repacked/model.tar.gz", Body=buffer.getvalue())
    return f"s3://{bucket}/repacked/model.tar.gz"


@pytest.fixture
def published(connection: str, role_arn: str) -> dict[str, str]:
    """The inference function, published by the stage's own operator."""
    return publish_operator(connection, role_arn).execute(context())


async def collect(trigger: DeviceDeploymentTrigger) -> list:
    return [event async for event in trigger.run()]


def run_trigger(trigger: DeviceDeploymentTrigger, **changes: Any) -> dict[str, Any]:
    """Run the trigger as the triggerer would (after a serialisation round trip); its one event."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**{**json.loads(json.dumps(kwargs)), **changes})
    (event,) = asyncio.run(collect(rebuilt))
    return event.payload


# -- PublishInferenceLambdaOperator -----------------------------------------------------------


def publish_operator(connection: str, role_arn: str, **changes: Any) -> PublishInferenceLambdaOperator:
    values: dict[str, Any] = {
        "task_id": "publish_lambda",
        "function_name": f"deeplens-inference-{uuid.uuid4().hex[:6]}",
        "role_arn": role_arn,
        "model_name": "deploy_model_algo_1",
        "labels": ["blue_box", "yellow_box"],
        "image_shape": 512,
        "thing_name": "deeplens_abc",
        "aws_conn_id": connection,
        **changes,
    }
    return PublishInferenceLambdaOperator(**values)


def test_publish_operator_publishes_once_per_code_and_settings(connection, role_arn, aws) -> None:
    operator = publish_operator(connection, role_arn)
    first = operator.execute(context())
    assert set(first) == {"function_arn", "version", "version_arn", "code_sha256"}
    assert first["version"] == "1"
    assert first["version_arn"] == f"{first['function_arn']}:1"
    variables = aws["lambda"].get_function_configuration(FunctionName=first["version_arn"])["Environment"][
        "Variables"
    ]
    assert variables["DEEPLENS_IOT_TOPIC"] == "$aws/things/deeplens_abc/infer"
    assert json.loads(variables["DEEPLENS_LABELS"]) == ["blue_box", "yellow_box"]
    assert operator.execute(context()) == first  # a retry publishes nothing new
    operator.labels = '["blue_box", "yellow_box", "green_box"]'  # as a rendered template
    assert operator.execute(context())["version"] == "2"


def test_publish_operator_uploads_changed_code_as_a_new_version(connection, role_arn, tmp_path) -> None:
    """New inference code (a project's own change) is uploaded and published, settings unchanged."""
    import shutil

    from deeplens_pipeline.lambda_package import locate_lambda_source

    source = tmp_path / "lambda"
    shutil.copytree(locate_lambda_source(), source, ignore=shutil.ignore_patterns("__pycache__"))
    operator = publish_operator(connection, role_arn, lambda_source_dir=str(source))
    first = operator.execute(context())
    (source / "deeplens_logic.py").write_text((source / "deeplens_logic.py").read_text() + "\n# changed\n")
    second = operator.execute(context())
    assert second["version"] == "2" and second["code_sha256"] != first["code_sha256"]


def test_publish_operator_refuses_bad_names_before_any_call(role_arn) -> None:
    operator = publish_operator("no_such_connection", role_arn, function_name="object-detection")
    with pytest.raises(ValueError, match="must begin with 'deeplens-'"):
        operator.execute(context())


def test_publish_operator_templates() -> None:
    for field in (
        "function_name",
        "role_arn",
        "model_name",
        "labels",
        "image_shape",
        "thing_name",
        "aws_conn_id",
    ):
        assert field in PublishInferenceLambdaOperator.template_fields


# -- DeployToDeviceOperator -------------------------------------------------------------------


def deploy_operator(connection: str, thing_name: str, **changes: Any) -> DeployToDeviceOperator:
    values: dict[str, Any] = {
        "task_id": "deploy_to_device",
        "method": "greengrass-v1",  # the legacy path most of these tests follow; v2 tests say so
        "thing_name": thing_name,
        "model_s3_uri": "s3://deeplens-chocolate/output/deeplens-train-x/output/model-deploy.tar.gz",
        "lambda_version_arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:deeplens-inference:1",
        "model_name": "deploy_model_algo_1",
        "labels": '["blue_box", "yellow_box"]',
        "image_shape": "512",
        "aws_conn_id": connection,
        "poll_interval": 0,
        "max_attempts": 2,
        **changes,
    }
    return DeployToDeviceOperator(**values)


def test_deploy_defers_to_the_trigger_and_a_retry_reattaches(connection, deeplens, aws, slow_device) -> None:
    operator = deploy_operator(connection, deeplens["thing_name"])
    first_context = context()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(first_context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, DeviceDeploymentTrigger)
    assert deferred.value.method_name == "execute_complete"
    handle = trigger.handle
    assert handle["group_id"] == deeplens["group_id"]
    assert first_context["ti"].xcom["deployment_handle"] == handle

    with pytest.raises(TaskDeferred) as again:
        operator.execute(context())
    assert again.value.trigger.handle["deployment_id"] == handle["deployment_id"]
    deployments = aws["greengrass"].list_deployments(GroupId=deeplens["group_id"])["Deployments"]
    assert [d["DeploymentId"] for d in deployments] == [handle["deployment_id"]]


def test_trigger_gives_up_after_max_attempts(connection, deeplens, slow_device) -> None:
    operator = deploy_operator(connection, deeplens["thing_name"])
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context())

    event = run_trigger(deferred.value.trigger)

    assert event["status"] == "timeout"
    assert event["deployment_status"]["state"] == "InProgress"
    assert event["attempts"] == 2
    with pytest.raises(AirflowException, match="still InProgress after 2 polls"):
        operator.execute_complete(context(), event)


def test_publish_then_deploy_succeeds_on_the_device(
    connection, deeplens, published, model_s3_uri, steady_device
) -> None:
    operator = deploy_operator(
        connection,
        deeplens["thing_name"],
        lambda_version_arn=published["version_arn"],
        model_s3_uri=model_s3_uri,
        poll_interval=0.1,
        max_attempts=100,
    )
    with pytest.raises(TaskDeferred) as deferred:  # the device has not applied it yet
        operator.execute(context())
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "Success"
    result = operator.execute_complete(context(), event)
    assert result == {
        "group_id": deeplens["group_id"],
        "deployment_id": event["handle"]["deployment_id"],
        "status": "Success",
        "method": "greengrass-v1",
        "thing_name": deeplens["thing_name"],
    }
    # a retry of the finished task finds the successful deployment and returns at once
    assert operator.execute(context()) == result


def test_device_failure_fails_the_task_with_its_message(connection, deeplens, aws, steady_device) -> None:
    operator = deploy_operator(connection, deeplens["thing_name"], poll_interval=0.1, max_attempts=100)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context())

    event = run_trigger(deferred.value.trigger)

    assert event["status"] == "Failure"
    missing = operator.lambda_version_arn
    with pytest.raises(AirflowException, match=f"failed: Failure: Lambda function {missing} does not exist"):
        operator.execute_complete(context(), event)


def test_execute_complete_success_failure_and_error_events(connection) -> None:
    operator = deploy_operator(connection, "deeplens_abc")
    handle = {"method": "greengrass-v1", "deployment_id": "d-1", "target": "deeplens_abc", "group_id": "g-1"}
    success = {"status": "Success", "handle": handle, "deployment_status": {"state": "Success"}}
    assert operator.execute_complete(context(), success) == {
        "group_id": "g-1",
        "deployment_id": "d-1",
        "status": "Success",
        "method": "greengrass-v1",
        "thing_name": "deeplens_abc",
    }
    failure = {
        "status": "Failure",
        "handle": handle,
        "deployment_status": {
            "state": "Failure",
            "error_message": "Greengrass could not download s3://deeplens-chocolate/model.tar.gz",
            "error_details": [{"DetailedErrorCode": "GG-205", "DetailedErrorMessage": "Access Denied"}],
        },
    }
    with pytest.raises(AirflowException, match="could not download .* \\[GG-205\\] Access Denied"):
        operator.execute_complete(context(), failure)
    with pytest.raises(AirflowException, match="Could not follow deployment d-1 .* ThrottlingException"):
        operator.execute_complete(
            context(), {"status": "error", "handle": handle, "message": "ThrottlingException"}
        )


def test_retry_after_a_failed_deployment_deploys_again(
    connection, deeplens, aws, emulator, monkeypatch
) -> None:
    operator = deploy_operator(connection, deeplens["thing_name"], poll_interval=0.1, max_attempts=100)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context())
    assert run_trigger(deferred.value.trigger)["status"] == "Failure"
    monkeypatch.setattr(emulator.settings, "deployment_delay_seconds", 20.0)
    with pytest.raises(TaskDeferred) as again:
        operator.execute(context())
    assert again.value.trigger.handle["deployment_id"] != deferred.value.trigger.handle["deployment_id"]
    assert len(aws["greengrass"].list_deployments(GroupId=deeplens["group_id"])["Deployments"]) == 2


def test_blocking_mode_polls_and_times_out(connection, deeplens, slow_device) -> None:
    operator = deploy_operator(connection, deeplens["thing_name"], deferrable=False, max_attempts=3)
    with pytest.raises(AirflowException, match="still InProgress after 3 polls"):
        operator.execute(context())


def test_blocking_mode_waits_for_success(connection, deeplens, published, model_s3_uri) -> None:
    operator = deploy_operator(
        connection,
        deeplens["thing_name"],
        lambda_version_arn=published["version_arn"],
        model_s3_uri=model_s3_uri,
        deferrable=False,
        poll_interval=0.1,
        max_attempts=100,
        # values as the DAG's templates render them
        labels="['blue_box', 'yellow_box']",
        image_shape="512",
        threshold="0.5",
        resize_mode="letterbox",
        method="greengrass-v1",
    )
    started = time.monotonic()
    assert operator.execute(context())["status"] == "Success"
    assert time.monotonic() - started < 15


def test_bad_arguments_fail_before_any_aws_call() -> None:
    with pytest.raises(AirflowException, match="method 'usb-stick' is not one of"):
        deploy_operator("no_such_connection", "deeplens_abc", method="usb-stick").execute(context())
    with pytest.raises(ValueError, match="image_shape must be an integer"):
        deploy_operator("no_such_connection", "deeplens_abc", image_shape="{{ params.image_shape }}").execute(
            context()
        )
    with pytest.raises(AirflowException, match="method 'ssh' needs ssh_host"):
        deploy_operator("no_such_connection", "deeplens_abc", method="ssh").execute(context())


def test_greengrass_v2_deploys_a_component_to_the_core(
    connection, deeplens, model_s3_uri, aws, steady_device
) -> None:
    """End to end on the emulator: the zip beside the model, a DEPLOYABLE component, the core's status."""
    operator = deploy_operator(
        connection,
        deeplens["thing_name"],
        method="greengrass-v2",
        model_s3_uri=model_s3_uri,
        poll_interval=0.1,
        max_attempts=100,
        run_token=f"gg2-{uuid.uuid4().hex[:12]}",
    )
    request = operator.build_request(context())
    bucket = model_s3_uri.split("/")[2]
    assert request.function_s3_uri == f"s3://{bucket}/deploy/functions/deeplens-inference-1.zip"
    first_context = context()
    with pytest.raises(TaskDeferred) as deferred:  # the core has not applied it yet
        operator.execute(first_context)
    body = aws["s3"].get_object(Bucket=bucket, Key="deploy/functions/deeplens-inference-1.zip")["Body"].read()
    assert body == lambda_package.build_deployment_zip()
    handle = deferred.value.trigger.handle
    assert handle["method"] == "greengrass-v2" and first_context["ti"].xcom["deployment_handle"] == handle
    component = aws["greengrassv2"].get_deployment(deploymentId=handle["deployment_id"])["components"]
    assert list(component) == [handle["details"]["component"]]

    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "Success"
    assert event["deployment_status"]["raw_status"] == "COMPLETED"
    result = operator.execute_complete(context(), event)
    assert result == {
        "group_id": None,
        "deployment_id": handle["deployment_id"],
        "status": "Success",
        "method": "greengrass-v2",
        "thing_name": deeplens["thing_name"],
    }
    # a retry of the finished task finds the successful deployment and returns at once
    assert operator.execute(context()) == result


def test_greengrass_v2_device_failure_fails_the_task_with_its_reason(
    connection, moto_endpoint, register_deeplens, model_s3_uri, aws, steady_device
) -> None:
    """A core whose token exchange role cannot read the bucket: the task fails with the core's reason."""
    device = register_deeplens(greengrass_v2=False)
    trust = (IAM_DIR / "device-token-exchange-role-trust.json").read_text()
    role = aws["iam"].create_role(RoleName=f"tes-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=trust)
    alias = f"alias-{uuid.uuid4().hex[:8]}"
    aws["iot"].create_role_alias(roleAlias=alias, roleArn=role["Role"]["Arn"])  # no permission policy
    register_core_device(moto_endpoint, REGION, device.thing_name, alias)
    operator = deploy_operator(
        connection,
        device.thing_name,
        method="greengrass-v2",
        model_s3_uri=model_s3_uri,
        poll_interval=0.1,
        max_attempts=100,
        run_token=f"gg2-{uuid.uuid4().hex[:12]}",
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context())
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "Failure"
    with pytest.raises(AirflowException, match="GetBucketLocation returns 403 Access Denied"):
        operator.execute_complete(context(), event)


def test_ssh_dry_run_returns_the_commands(connection) -> None:
    operator = deploy_operator(
        connection,
        "deeplens_abc",
        method="ssh",
        ssh_host="192.168.1.20",
        ssh_key_file="/keys/d",
        ssh_dry_run=True,
    )
    result = operator.execute(context())
    assert result["status"] == "DryRun"
    assert result["commands"][1].startswith("scp -P 22 ")
    assert any("tar -xzf" in command for command in result["commands"])


def test_run_token_is_stable_per_run_and_task(connection) -> None:
    operator = deploy_operator(connection, "deeplens_abc")
    token = operator.build_request(context()).run_token
    assert token == operator.build_request(context()).run_token
    other_run = {**context(), "run_id": "scheduled__2026-01-03T00:00:00+00:00"}
    assert operator.build_request(other_run).run_token != token
    assert (
        deploy_operator(connection, "deeplens_abc", run_token="given").build_request({}).run_token == "given"
    )
    with pytest.raises(AirflowException, match="no run_token given"):
        operator.build_request({})


def test_deploy_operator_templates() -> None:
    for field in ("method", "thing_name", "model_s3_uri", "lambda_version_arn", "labels", "image_shape"):
        assert field in DeployToDeviceOperator.template_fields


def test_trigger_reports_a_status_call_that_fails(connection) -> None:
    handle = {
        "method": "greengrass-v1",
        "deployment_id": "no-such",
        "target": "deeplens_abc",
        "group_id": "nope",
    }
    trigger = DeviceDeploymentTrigger(handle=handle, aws_conn_id=connection, poll_interval=0, max_attempts=2)
    event = run_trigger(trigger)
    assert event["status"] == "error"
    assert "Deployment 'no-such' does not exist" in event["message"]


def test_trigger_polls_greengrass_deployments_only() -> None:
    handle = {"method": "ssh", "deployment_id": "ssh-1", "target": "deeplens_abc"}
    with pytest.raises(ValueError, match="deployments by 'ssh' are not polled"):
        DeviceDeploymentTrigger(handle=handle)
