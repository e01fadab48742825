"""Wait for a Ground Truth labelling job in the triggerer (labelling can take days)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.triggers.base import TriggerEvent

from deeplens_pipeline.hooks.groundtruth import GroundTruthHook


class LabelingJobTrigger(AwsBaseWaiterTrigger):
    """Polls DescribeLabelingJob until Completed (success) or Failed/Stopped (error event).

    Each poll logs the status and label counters, so the task log shows progress. The first poll
    comes one ``waiter_delay`` after the deferral: the operator has just checked the job, and a
    resume right away would race Airflow 3.3.1's scheduler (apache/airflow#72716).
    """

    def __init__(
        self,
        *,
        job_name: str,
        waiter_delay: int = 300,
        waiter_max_attempts: int = 8640,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"job_name": job_name},
            waiter_name="LabelingJobComplete",
            waiter_args={"LabelingJobName": job_name},
            failure_message=f"Labelling job {job_name} did not complete",
            status_message=f"Labelling job {job_name}",
            status_queries=["LabelingJobStatus", "LabelCounters", "FailureReason"],
            return_key="job_name",
            return_value=job_name,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
        )
        self.job_name = job_name

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.waiter_delay)
        async for event in super().run():
            yield event

    async def on_kill(self) -> None:
        """Stop the labelling job when a user marks the deferred task failed or succeeded, or
        clears it, so its workers' tasks are withdrawn and bill no more."""
        from deeplens_pipeline.triggers.sagemaker import stop_job

        await stop_job(self, self.hook(), "stop_labeling_job", "LabelingJobName", self.job_name)

    def hook(self) -> GroundTruthHook:
        return GroundTruthHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
