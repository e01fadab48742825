"""The provider's SageMaker job trigger, waiting one poll interval before its first poll, and
stopping its job when a user kills the deferred task.

Every deferral of a training or tuning task follows the operator's own status check, so an
immediate first poll learns nothing new, and a job already done makes the task resume at once,
which races Airflow 3.3.1's scheduler (apache/airflow#72716: a red try and a lost minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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


class SageMakerJobTrigger(SageMakerTrigger):
    """``SageMakerTrigger`` that first waits ``waiter_delay`` seconds; the provider does the rest."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.waiter_delay)
        async for event in super().run():
            yield event

    async def on_kill(self) -> None:
        """Stop the job when a user marks the deferred task failed or succeeded, or clears it
        (Airflow calls this only then: not on a triggerer restart, a timeout or completion)."""
        action, argument = STOP_ACTIONS[self.job_type.lower()]
        await stop_job(self, self.hook(), action, argument, self.job_name)

    @classmethod
    def from_provider(cls, trigger: SageMakerTrigger, region_name: str | None) -> SageMakerJobTrigger:
        """The wait ``trigger`` (built by the provider's operator) describes, in ``region_name`` when
        it names none (the provider's training operator builds it without a region)."""
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
