"""Stage 7: publish the inference function as a Lambda version, then deploy it with the model.

Both operators reach AWS through the Amazon provider's hooks on one connection, so the
connection's ``endpoint_url`` points them at the emulator or at AWS with no code change. The hooks
and the deployment trigger (which import boto3) are imported when a task runs, not when the DAG
file is parsed (see ``operators/aws.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from deeplens_pipeline.airflow_compat import AirflowException
from deeplens_pipeline.deploy.base import (
    FAILURE,
    METHODS,
    DeploymentHandle,
    DeploymentRequest,
    DeploymentStatus,
    DeviceDeployer,
    split_s3_uri,
)
from deeplens_pipeline.deploy.inference_settings import InferenceSettings
from deeplens_pipeline.deploy.polling import wait_for_final_status
from deeplens_pipeline.deploy.ssh import (
    DEFAULT_FUNCTION_DIR,
    DEFAULT_RESTART_COMMAND,
    RemoteLayout,
    SshDeployer,
    SshTarget,
)
from deeplens_pipeline.lambda_package import (
    DEFAULT_HANDLER,
    DEFAULT_RUNTIME,
    FunctionSpec,
    build_deployment_zip,
    publish_inference_function,
)
from deeplens_pipeline.naming import run_token as make_run_token
from deeplens_pipeline.operators.aws import AwsOperator, aws_template_fields
from deeplens_pipeline.operators.base import DEFAULT_CONN_ID, run_config, run_scope, xcom_outputs


def _inference_settings(
    operator: PublishInferenceLambdaOperator | DeployToDeviceOperator,
) -> InferenceSettings:
    """The inference settings from an operator's rendered arguments (a bad value names itself)."""
    return InferenceSettings.from_values(
        model_name=operator.model_name,
        labels=operator.labels,
        image_shape=operator.image_shape,
        threshold=operator.threshold,
        thing_name=operator.thing_name,
        resize_mode=operator.resize_mode,
    )


class PublishInferenceLambdaOperator(AwsOperator):
    """Package ``include/lambda`` and publish it as a version of ``function_name`` (seed step 6).

    The function's environment carries the inference settings (model name, labels, image size,
    threshold, topic), so nobody edits code per project. Publishing unchanged code and settings
    returns the existing version. Returns ``{"function_arn", "version", "version_arn",
    "code_sha256"}``.

    The zip holds ``include/lambda`` and, at its root, the ``greengrasssdk`` package (from the
    pinned ``greengrasssdk`` distribution in requirements.txt). The function is created with
    ``runtime`` (``python3.13`` by default: Lambda refuses python3.7, and python3.8 from 2027); the DeepLens's
    Greengrass V1 core still runs it as Python 3.7 (the greengrass-v1 deployment writes
    ``FunctionRuntimeOverride``).

    :param function_name: Lambda function name; must begin with ``deeplens-``.
    :param role_arn: The function's execution role (e.g. AWSDeepLensLambdaRole); its trust policy
        must let ``lambda.amazonaws.com`` assume it.
    :param runtime: The Lambda runtime the function is created with.
    :param model_name: Prefix of the deploy artefacts, ``deploy_<prefix>``.
    :param labels: Class names in class-id order (list, JSON list or comma-separated text).
    :param image_shape: The model's square input size (300, 480 or 512).
    :param thing_name: The DeepLens thing, to fix the topic ``$aws/things/<thing>/infer``.
    :param lambda_source_dir: Override where the function's code is read from.
    """

    aws_hook_class = "airflow.providers.amazon.aws.hooks.lambda_function.LambdaHook"
    template_fields: Sequence[str] = aws_template_fields(
        "function_name",
        "role_arn",
        "model_name",
        "labels",
        "image_shape",
        "thing_name",
        "threshold",
        "resize_mode",
        "runtime",
        "handler",
        "timeout",
        "memory_size",
    )

    def __init__(
        self,
        *,
        function_name: str,
        role_arn: str,
        model_name: str,
        labels: Sequence[str] | str,
        image_shape: int | str,
        thing_name: str | None = None,
        threshold: float | str = 0.5,
        resize_mode: str = "letterbox",
        runtime: str = DEFAULT_RUNTIME,
        handler: str = DEFAULT_HANDLER,
        timeout: int | str = 30,
        memory_size: int | str = 1536,
        lambda_source_dir: str | None = None,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.function_name = function_name
        self.role_arn = role_arn
        self.model_name = model_name
        self.labels = labels
        self.image_shape = image_shape
        self.thing_name = thing_name
        self.threshold = threshold
        self.resize_mode = resize_mode
        self.runtime = runtime
        self.handler = handler
        self.timeout = timeout
        self.memory_size = memory_size
        self.lambda_source_dir = lambda_source_dir

    def execute(self, context: Any) -> dict[str, str]:
        settings = _inference_settings(self)
        spec = FunctionSpec(
            name=self.function_name,
            role_arn=self.role_arn,
            runtime=self.runtime,
            handler=self.handler,
            timeout=int(self.timeout),
            memory_size=int(self.memory_size),
            environment=settings.environment(),
        )
        published = publish_inference_function(self.hook.conn, spec, _package(self.lambda_source_dir))
        self.log.info(
            "%s version %s of %s (CodeSha256 %s)",
            "Published" if published.created else "Reusing",
            published.version,
            published.function_arn,
            published.code_sha256,
        )
        return xcom_outputs(published.to_dict())


class DeployToDeviceOperator(AwsOperator):
    """Deploy the model and the published function to the DeepLens, then wait for the final status.

    ``method`` chooses how: ``greengrass-v1`` (the classic DeepLens path: new group version keeping
    the core, then a deployment), ``greengrass-v2`` (a component on a Greengrass V2 core) or
    ``ssh`` (straight to the device). Greengrass deployments are awaited in the triggerer
    (``deferrable``) or by polling here; the status is logged at each poll and a failure fails the
    task with the device's error message. A retry re-attaches to the deployment it started (same
    run token: definitions and group version reused, the existing deployment found) instead of
    creating a second one. Returns ``{"group_id", "deployment_id", "status"}`` (plus ``method``
    and ``thing_name``).

    :param method: ``greengrass-v1``, ``greengrass-v2`` or ``ssh``.
    :param thing_name: The device's IoT thing (``deeplens_<id>``).
    :param model_s3_uri: The repacked ``model.tar.gz`` (deploy artefacts at its root).
    :param lambda_version_arn: The published version, from PublishInferenceLambdaOperator.
    :param function_s3_uri: greengrass-v2 only: where to put the function's zip (a component artifact);
        defaults to ``s3://<model bucket>/deploy/functions/<function>-<version>.zip``.
    :param ssh_host: ssh only: the device's address; ``ssh_user`` and ``ssh_key_file`` likewise. Left
        None, each comes from the run's checked Params (``params.ssh_host`` ...), as the text the user
        gave: a ``"{{ params.ssh_host }}"`` template would be rendered natively (the DAG's
        ``render_template_as_native_obj``), and a host such as ``"10.0"`` would become a number.
    :param run_token: Identifies the run for idempotency; defaults to one derived from the run id.
    """

    aws_hook_class = "airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook"
    template_fields: Sequence[str] = aws_template_fields(
        "method",
        "thing_name",
        "model_s3_uri",
        "lambda_version_arn",
        "model_name",
        "labels",
        "image_shape",
        "threshold",
        "resize_mode",
        "group_id",
        "function_s3_uri",
        "ssh_host",
        "ssh_user",
        "ssh_key_file",
        "run_token",
        "poll_interval",
    )

    def __init__(
        self,
        *,
        thing_name: str,
        model_s3_uri: str,
        lambda_version_arn: str,
        model_name: str,
        labels: Sequence[str] | str,
        image_shape: int | str,
        method: str = "greengrass-v2",
        threshold: float | str = 0.5,
        resize_mode: str = "letterbox",
        memory_mb: int = 1536,
        timeout_s: int = 25,
        group_id: str | None = None,
        function_s3_uri: str | None = None,
        ssh_host: str | None = None,
        ssh_user: str | None = None,
        ssh_key_file: str | None = None,
        ssh_port: int = 22,
        ssh_known_hosts_file: str | None = None,
        ssh_function_dir: str = DEFAULT_FUNCTION_DIR,
        ssh_restart_command: str = DEFAULT_RESTART_COMMAND,
        ssh_dry_run: bool = False,
        run_token: str | None = None,
        poll_interval: float = 30,
        max_attempts: int = 240,
        deferrable: bool = True,
        lambda_source_dir: str | None = None,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.method = method
        self.thing_name = thing_name
        self.model_s3_uri = model_s3_uri
        self.lambda_version_arn = lambda_version_arn
        self.model_name = model_name
        self.labels = labels
        self.image_shape = image_shape
        self.threshold = threshold
        self.resize_mode = resize_mode
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.group_id = group_id
        self.function_s3_uri = function_s3_uri
        self.ssh_host = ssh_host
        self.ssh_user = ssh_user
        self.ssh_key_file = ssh_key_file
        self.ssh_port = ssh_port
        self.ssh_known_hosts_file = ssh_known_hosts_file
        self.ssh_function_dir = ssh_function_dir
        self.ssh_restart_command = ssh_restart_command
        self.ssh_dry_run = ssh_dry_run
        self.run_token = run_token
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.deferrable = deferrable
        self.lambda_source_dir = lambda_source_dir

    # -- building blocks ------------------------------------------------------------------------

    def _connection(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    def _token(self, context: Any) -> str:
        if self.run_token:
            return str(self.run_token)
        try:
            scope = run_scope(context)
        except ValueError as err:
            raise AirflowException(f"no run_token given, and none can be derived: {err}") from None
        return make_run_token(f"{scope.token}|{self.task_id}")

    def _ssh_from_params(self, context: Any) -> None:
        """ssh: the settings left None, from the run's checked Params (text, as the user gave it)."""
        names = [name for name in ("ssh_host", "ssh_user", "ssh_key_file") if getattr(self, name) is None]
        if self.method != "ssh" or not names or "params" not in context:
            return
        config = run_config(context)
        for name in names:
            setattr(self, name, config[name])

    def build_deployer(self) -> DeviceDeployer:
        """The deployer for ``method``, with clients from this operator's connection."""
        from deeplens_pipeline.triggers.greengrass import aws_client, greengrass_deployer

        if self.method == "ssh":
            if not self.ssh_host:
                raise AirflowException("method 'ssh' needs ssh_host (and usually ssh_key_file)")
            return SshDeployer(
                target=SshTarget(
                    host=self.ssh_host,
                    user=self.ssh_user or SshTarget.user,
                    key_file=self.ssh_key_file or None,
                    port=int(self.ssh_port),
                    known_hosts_file=self.ssh_known_hosts_file,
                ),
                s3_client=aws_client("s3", **self._connection()),
                layout=RemoteLayout(
                    function_dir=self.ssh_function_dir, restart_command=self.ssh_restart_command
                ),
                dry_run=bool(self.ssh_dry_run),
            )
        return greengrass_deployer(self.method, group_id=self.group_id or None, **self._connection())

    def build_request(self, context: Any) -> DeploymentRequest:
        """The deployment request from the rendered arguments; bad values fail before any AWS call."""
        if self.method not in METHODS:
            raise AirflowException(f"method {self.method!r} is not one of {list(METHODS)}")
        request = DeploymentRequest(
            thing_name=self.thing_name,
            model_s3_uri=self.model_s3_uri,
            lambda_version_arn=self.lambda_version_arn,
            settings=_inference_settings(self),
            run_token=self._token(context),
            memory_mb=int(self.memory_mb),
            timeout_s=int(self.timeout_s),
            function_s3_uri=self.function_s3_uri or None,
            function_package=_package(self.lambda_source_dir) if self.method == "ssh" else None,
        )
        if self.method == "greengrass-v2" and not request.function_s3_uri:
            # beside the model, in the bucket the device can already read
            bucket, _ = split_s3_uri(request.model_s3_uri, "model_s3_uri")
            key = f"deploy/functions/{request.function_name}-{request.function_version}.zip"
            request = replace(request, function_s3_uri=f"s3://{bucket}/{key}")
        return request

    def _upload_function(self, request: DeploymentRequest) -> None:
        """greengrass-v2: put the function's zip where the component recipe points."""
        from deeplens_pipeline.triggers.greengrass import aws_client

        bucket, key = split_s3_uri(request.function_s3_uri or "", "function_s3_uri")
        package = _package(self.lambda_source_dir)
        aws_client("s3", **self._connection()).put_object(Bucket=bucket, Key=key, Body=package)
        self.log.info("Uploaded the function's package to %s", request.function_s3_uri)

    # -- execution ------------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        self._ssh_from_params(context)
        request = self.build_request(context)
        deployer = self.build_deployer()
        if self.method == "greengrass-v2":
            self._upload_function(request)
        handle = deployer.deploy(request)
        self.log.info("Deployment %s (%s) to %s started", handle.deployment_id, handle.method, handle.target)
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key="deployment_handle", value=handle.to_dict())
        if handle.details.get("dry_run"):
            self.log.info("Dry run: nothing was deployed")
            return {**self._result(handle, "DryRun"), "commands": handle.details.get("commands", [])}
        status = deployer.status(handle)
        self.log.info("Deployment %s: %s", handle.deployment_id, status.describe())
        if status.is_final:
            return self._finish(handle, status)
        if self.deferrable:
            from deeplens_pipeline.triggers.greengrass import DeviceDeploymentTrigger

            self.defer(
                trigger=DeviceDeploymentTrigger(
                    handle=handle.to_dict(),
                    poll_interval=float(self.poll_interval),
                    max_attempts=self.max_attempts,
                    **self._connection(),
                ),
                method_name="execute_complete",
            )

        async def get_status() -> DeploymentStatus:
            return deployer.status(handle)  # blocking is fine: this loop runs nothing else

        outcome = asyncio.run(
            wait_for_final_status(
                get_status,
                poll_interval=float(self.poll_interval),
                max_attempts=self.max_attempts,
                describe=f"Deployment {handle.deployment_id} to {handle.target}",
                log=self.log,
            )
        )
        if outcome.timed_out:
            raise AirflowException(self._timeout_message(handle, outcome.status, outcome.attempts))
        return self._finish(handle, outcome.status)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger: succeed, or fail with the device's error message."""
        handle = DeploymentHandle.from_dict(event["handle"])
        if event["status"] == "error":
            raise AirflowException(
                f"Could not follow deployment {handle.deployment_id} to {handle.target}: "
                f"{event.get('message')}"
            )
        last = (
            DeploymentStatus.from_dict(event["deployment_status"]) if event.get("deployment_status") else None
        )
        if event["status"] == "timeout":
            raise AirflowException(self._timeout_message(handle, last, event.get("attempts", 0)))
        if last is None:
            raise AirflowException(
                f"Trigger event for deployment {handle.deployment_id} carries no status: {event}"
            )
        return self._finish(handle, last)

    def _timeout_message(self, handle: DeploymentHandle, last: DeploymentStatus | None, attempts: int) -> str:
        seen = last.describe() if last else "no status"
        return (
            f"Deployment {handle.deployment_id} to {handle.target} is still {seen} after {attempts} polls "
            f"({self.poll_interval}s apart); raise max_attempts or check the device"
        )

    def _result(self, handle: DeploymentHandle, state: str) -> dict[str, Any]:
        return {
            "group_id": handle.group_id,
            "deployment_id": handle.deployment_id,
            "status": state,
            "method": handle.method,
            "thing_name": handle.target,
        }

    def _finish(self, handle: DeploymentHandle, status: DeploymentStatus) -> dict[str, Any]:
        if status.state == FAILURE:
            raise AirflowException(
                f"Deployment {handle.deployment_id} ({handle.method}) to {handle.target} failed: "
                f"{status.describe()}"
            )
        self.log.info("Deployment %s to %s: %s", handle.deployment_id, handle.target, status.describe())
        return self._result(handle, status.state)


def _package(lambda_source_dir: str | None) -> bytes:
    """The inference function's deployment zip, from ``lambda_source_dir`` or where it is found."""
    return build_deployment_zip(Path(lambda_source_dir) if lambda_source_dir else None)
