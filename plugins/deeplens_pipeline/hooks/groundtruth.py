"""A SageMaker hook that also knows Ground Truth labelling jobs (which the provider does not)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)
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
        """DescribeLabelingJob, or None when no job has that name (see :func:`describe_or_none`)."""
        return describe_or_none(lambda job: self.conn.describe_labeling_job(LabelingJobName=job), name)


def describe_or_none(describe: Callable[[str], dict[str, Any]], name: str) -> dict[str, Any] | None:
    """``describe(name)``, or None when SageMaker has no job of that name.

    The service models list ``ResourceNotFound``, but the real service answers an unknown training
    or labelling job with ``ValidationException`` (as AWS's own sagemaker-controller expects). The
    pipeline's names are valid by construction and boto3 has checked the request's shape, so here
    a ``ValidationException`` can only mean "no such job"; both answers are taken as that.
    """
    try:
        return describe(name)
    except ClientError as err:
        if err.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            log.info("No SageMaker job %s yet (%s)", name, err.response["Error"].get("Message"))
            return None
        raise
