"""Wait in the triggerer for a device deployment's final status (Greengrass V1 or V2).

Why a small trigger rather than ``AwsBaseWaiterTrigger`` with a custom waiter model: the status
needs logic a waiter's JMESPath acceptors cannot express (Greengrass V2 reads the device's
status from ListEffectiveDeployments and falls back to GetDeployment; V1 maps ErrorDetails), and
that logic already lives in the deployers' ``status()``. This trigger calls exactly that code, so
the blocking mode, the trigger and the tests share one implementation. The boto3 calls run in a
worker thread (``asgiref.sync_to_async``, as the provider does to build its clients), so the
triggerer's event loop never blocks, and the optional ``aiobotocore`` extra is not needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from deeplens_pipeline.deploy.base import DeploymentHandle, DeploymentStatus, DeviceDeployer
from deeplens_pipeline.deploy.greengrass_v1 import GreengrassV1Deployer
from deeplens_pipeline.deploy.greengrass_v2 import GreengrassV2Deployer
from deeplens_pipeline.deploy.polling import wait_for_final_status

POLLED_METHODS = ("greengrass-v1", "greengrass-v2")


def aws_client(
    service: str,
    *,
    aws_conn_id: str | None,
    region_name: str | None = None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> Any:
    """A boto3 client for ``service`` from the Airflow connection (its ``endpoint_url`` included)."""
    return AwsBaseHook(
        aws_conn_id=aws_conn_id,
        region_name=region_name,
        verify=verify,
        client_type=service,
        config=botocore_config,
    ).conn


def greengrass_deployer(method: str, *, group_id: str | None = None, **connection: Any) -> DeviceDeployer:
    """The Greengrass V1 or V2 deployer, with clients from the connection (``aws_client``'s arguments)."""
    iot = aws_client("iot", **connection)
    if method == "greengrass-v1":
        return GreengrassV1Deployer(
            aws_client("greengrass", **connection),
            iot,
            lambda_client=aws_client("lambda", **connection),  # the version's runtime: the override
            group_id=group_id,
        )
    if method == "greengrass-v2":
        return GreengrassV2Deployer(aws_client("greengrassv2", **connection), iot)
    raise ValueError(f"method {method!r} has no deployment status to poll; expected one of {POLLED_METHODS}")


class DeviceDeploymentTrigger(BaseTrigger):
    """Polls a deployment until Success or Failure, logging the status at every poll.

    Emits one event: ``{"status": "Success" | "Failure", "deployment_status": {...}}`` when final,
    ``{"status": "timeout", ...}`` after ``max_attempts`` polls, or ``{"status": "error",
    "message": ...}`` if asking for the status failed.
    """

    def __init__(
        self,
        *,
        handle: dict[str, Any],
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        poll_interval: float = 30,
        max_attempts: int = 240,
    ) -> None:
        super().__init__()
        self.handle = DeploymentHandle.from_dict(handle).to_dict()
        if self.handle["method"] not in POLLED_METHODS:
            raise ValueError(f"deployments by {self.handle['method']!r} are not polled")
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "handle": self.handle,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "poll_interval": self.poll_interval,
                "max_attempts": self.max_attempts,
            },
        )

    def _deployer(self) -> DeviceDeployer:
        return greengrass_deployer(
            self.handle["method"],
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        handle = DeploymentHandle.from_dict(self.handle)
        # The operator has just read the status: the first poll comes one interval later (a resume
        # right away would race Airflow 3.3.1's scheduler, apache/airflow#72716).
        await asyncio.sleep(self.poll_interval)
        try:
            deployer = await sync_to_async(self._deployer)()

            async def get_status() -> DeploymentStatus:
                return await sync_to_async(deployer.status, thread_sensitive=False)(handle)

            outcome = await wait_for_final_status(
                get_status,
                poll_interval=self.poll_interval,
                max_attempts=self.max_attempts,
                describe=f"Deployment {handle.deployment_id} to {handle.target}",
                log=self.log,
            )
        except Exception as exc:
            yield TriggerEvent(
                {"status": "error", "handle": self.handle, "message": f"{type(exc).__name__}: {exc}"}
            )
            return
        last = outcome.status.to_dict() if outcome.status else None
        if outcome.timed_out:
            yield TriggerEvent(
                {
                    "status": "timeout",
                    "handle": self.handle,
                    "deployment_status": last,
                    "attempts": outcome.attempts,
                }
            )
            return
        yield TriggerEvent(
            {
                "status": outcome.status.state,
                "handle": self.handle,
                "deployment_status": last,
                "attempts": outcome.attempts,
            }
        )
