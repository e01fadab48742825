"""A SageMaker hook that also knows Ground Truth labelling jobs (which the provider does not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from botocore.exceptions import ClientError

WAITERS = Path(__file__).resolve().parent.parent / "waiters" / "sagemaker.json"


class GroundTruthHook(SageMakerHook):
    """The provider's SageMaker hook, with a ``LabelingJobComplete`` waiter model of our own.

    boto3 has no waiter for labelling jobs; the provider's custom-waiter mechanism loads ours
    from ``waiters/sagemaker.json``, so the standard waiter trigger can poll it without a worker.
    """

    @property
    def waiter_path(self) -> Path:
        return WAITERS

    def describe_labeling_job(self, name: str) -> dict[str, Any] | None:
        """DescribeLabelingJob, or None when no job has that name.

        The service model lists ``ResourceNotFound``, but the real service answers an unknown name
        with ``ValidationException`` (as AWS's own sagemaker-controller expects). Our names are
        valid by construction and boto3 has checked the request's shape, so here a
        ``ValidationException`` can only mean "no such job"; both answers are taken as that.
        """
        try:
            return self.conn.describe_labeling_job(LabelingJobName=name)
        except ClientError as err:
            if err.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
                self.log.info("No labelling job %s yet (%s)", name, err.response["Error"].get("Message"))
                return None
            raise
