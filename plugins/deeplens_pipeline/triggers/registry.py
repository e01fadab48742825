"""Wait in the triggerer until someone approves or rejects a model package version.

Polls DescribeModelPackage every ``poll_seconds`` (first after one interval: the task has just
looked) and logs how long it has waited and how to decide, so the wait holds no worker slot and
its progress shows in the task's trigger log. Fires with the version's status once it is no longer
``PendingManualApproval``, or ``{"status": "timeout"}`` once ``deadline`` (epoch seconds: the same
instant however often the triggerer restarts it) has passed; a transient AWS error is logged and
polled again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import ClientError

PENDING = "PendingManualApproval"


class ModelApprovalTrigger(BaseTrigger):
    """Fire ``{"status", "arn", "approval_description", "waited_seconds"}`` once the version is decided
    (``status`` ``"timeout"`` when ``deadline`` passed first)."""

    def __init__(
        self,
        model_package_arn: str,
        poll_seconds: int = 60,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.model_package_arn = model_package_arn
        self.poll_seconds = int(poll_seconds)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.deadline = None if deadline is None else float(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_package_arn": self.model_package_arn,
                "poll_seconds": self.poll_seconds,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "deadline": self.deadline,
            },
        )

    def _hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        return SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    async def describe(self) -> dict[str, Any]:
        """DescribeModelPackage of the version (aiobotocore: the triggerer's loop is never blocked)."""
        async with await self._hook().get_async_conn() as client:
            return await client.describe_model_package(ModelPackageName=self.model_package_arn)

    def _timeout(self, waited: int) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": "timeout",
                "arn": self.model_package_arn,
                "approval_description": None,
                "waited_seconds": waited,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        polls = 0
        while True:
            if self.deadline is not None:
                await asyncio.sleep(max(0.0, min(self.poll_seconds, self.deadline - time.time())))
            else:
                await asyncio.sleep(self.poll_seconds)
            polls += 1
            waited = int(time.monotonic() - started)
            past_deadline = self.deadline is not None and time.time() >= self.deadline
            try:
                description = await self.describe()
            except ClientError as err:
                if past_deadline:  # the task reads the version again: a decision made in time still counts
                    self.log.warning(
                        "DescribeModelPackage %s failed (%s) at the deadline", self.model_package_arn, err
                    )
                    yield self._timeout(waited)
                    return
                self.log.warning(
                    "DescribeModelPackage %s failed (%s); polling again", self.model_package_arn, err
                )
                continue
            status = description.get("ModelApprovalStatus") or PENDING
            if status != PENDING:
                self.log.info("%s is %s after %d s", self.model_package_arn, status, waited)
                yield TriggerEvent(
                    {
                        "status": status,
                        "arn": self.model_package_arn,
                        "approval_description": description.get("ApprovalDescription"),
                        "waited_seconds": waited,
                    }
                )
                return
            if past_deadline:
                self.log.warning("%s is still %s at its deadline", self.model_package_arn, status)
                yield self._timeout(waited)
                return
            self.log.info(
                "Still %s after %d s (check %d): approve with `aws sagemaker update-model-package "
                "--model-package-arn %s --model-approval-status Approved`, or reject with "
                "--model-approval-status Rejected --approval-description 'why'",
                status,
                waited,
                polls,
                self.model_package_arn,
            )
