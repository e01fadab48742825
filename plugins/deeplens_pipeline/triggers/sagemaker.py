"""The provider's SageMaker job trigger, waiting one poll interval before its first poll, and
stopping its job when a user kills the deferred task.

Every deferral of a training or tuning task follows the operator's own status check, so an
immediate first poll learns nothing new, and a job already done makes the task resume at once,
which races Airflow 3.3.1's scheduler (apache/airflow#72716: a red try and a lost minute).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError

# The Stop… action and its name argument, by the provider's job_type (compared lower-case).
STOP_ACTIONS = {
    "training": ("stop_training_job", "TrainingJobName"),
    "tuning": ("stop_hyper_parameter_tuning_job", "HyperParameterTuningJobName"),
    "transform": ("stop_transform_job", "TransformJobName"),
    "processing": ("stop_processing_job", "ProcessingJobName"),
}


async def stop_job(trigger: object, client_hook: object, action: str, argument: str, name: str) -> None:
    """Call SageMaker's ``action`` on the job ``name``; a job already ended is said, not raised."""
    log = trigger.log  # type: ignore[attr-defined]
    try:
        async with await client_hook.get_async_conn() as client:  # type: ignore[attr-defined]
            await getattr(client, action)(**{argument: name})
    except ClientError as err:
        log.warning("Could not stop job %s (%s): %s", name, err.response["Error"]["Code"], err)
        return
    log.info(
        "The task was killed, cleared or marked by a user: stopped job %s (%s), so it bills no more",
        name,
        action,
    )


_PROVIDER_TAKES_REGION = "region_name" in inspect.signature(SageMakerTrigger.__init__).parameters
"""Amazon provider 9.13 and later (MWAA 3.3.1): the trigger is an ``AwsBaseWaiterTrigger`` with a region.
Older providers (9.12 on MWAA 3.0.6, 9.8 on 2.11) take ``poke_interval``/``max_attempts`` and no
region, and serialize themselves under the provider's class path (which would lose this subclass)."""


class SageMakerJobTrigger(SageMakerTrigger):
    """``SageMakerTrigger`` that first waits ``waiter_delay`` seconds; the provider does the rest."""

    if not _PROVIDER_TAKES_REGION:

        def __init__(
            self,
            job_name: str,
            job_type: str,
            waiter_delay: int = 30,
            waiter_max_attempts: int = 480,
            aws_conn_id: str | None = "aws_default",
            region_name: str | None = None,
            verify: bool | str | None = None,
            botocore_config: dict | None = None,
        ) -> None:
            super().__init__(
                job_name=job_name,
                job_type=job_type,
                poke_interval=waiter_delay,
                max_attempts=waiter_max_attempts,
                aws_conn_id=aws_conn_id,
            )
            self.waiter_delay, self.attempts = waiter_delay, waiter_max_attempts
            self.region_name, self.verify, self.botocore_config = region_name, verify, botocore_config

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return (
                f"{type(self).__module__}.{type(self).__qualname__}",
                {
                    "job_name": self.job_name,
                    "job_type": self.job_type,
                    "waiter_delay": self.waiter_delay,
                    "waiter_max_attempts": self.attempts,
                    "aws_conn_id": self.aws_conn_id,
                    "region_name": self.region_name,
                    "verify": self.verify,
                    "botocore_config": self.botocore_config,
                },
            )

        @cached_property
        def hook(self) -> Any:  # the old provider reads ``self.hook`` as a property
            from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

            return SageMakerHook(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                config=self.botocore_config,
            )

    def _sagemaker_hook(self) -> Any:
        return self.hook() if _PROVIDER_TAKES_REGION else self.hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.waiter_delay)
        async for event in super().run():
            yield event

    async def on_kill(self) -> None:
        """Stop the job when a user marks the deferred task failed or succeeded, or clears it
        (Airflow 3.1+ calls this only then: not on a triggerer restart, a timeout or completion;
        earlier versions never call it)."""
        action, argument = STOP_ACTIONS[self.job_type.lower()]
        await stop_job(self, self._sagemaker_hook(), action, argument, self.job_name)

    @classmethod
    def from_provider(cls, trigger: SageMakerTrigger, region_name: str | None) -> SageMakerJobTrigger:
        """The wait ``trigger`` (built by the provider's operator) describes, in ``region_name`` when
        it names none (the provider's training operator builds it without a region)."""
        if not _PROVIDER_TAKES_REGION:
            return cls(
                job_name=trigger.job_name,
                job_type=trigger.job_type,
                waiter_delay=trigger.poke_interval,
                waiter_max_attempts=trigger.max_attempts,
                aws_conn_id=trigger.aws_conn_id,
                region_name=region_name,
            )
        return cls(
            job_name=trigger.job_name,
            job_type=trigger.job_type,
            waiter_delay=trigger.waiter_delay,
            waiter_max_attempts=trigger.attempts,
            aws_conn_id=trigger.aws_conn_id,
            region_name=trigger.region_name or region_name,
            verify=trigger.verify,
            botocore_config=trigger.botocore_config,
        )
