"""The provider's SageMaker job trigger, waiting one poll interval before its first poll.

Every deferral of a training or tuning task follows the operator's own status check, so an
immediate first poll learns nothing new, and a job already done makes the task resume at once,
which races Airflow 3.3.1's scheduler (apache/airflow#72716: a red try and a lost minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.triggers.base import TriggerEvent


class SageMakerJobTrigger(SageMakerTrigger):
    """``SageMakerTrigger`` that first waits ``waiter_delay`` seconds; the provider does the rest."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.waiter_delay)
        async for event in super().run():
            yield event

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
