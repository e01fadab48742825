"""What every pipeline operator shares: the checked run configuration and the AWS connection."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import BaseOperator

from deeplens_pipeline.layout import BucketLayout
from deeplens_pipeline.params import validate_params

DEFAULT_CONN_ID = "aws_deeplens"


def run_config(context: Any) -> dict[str, Any]:
    """The DAG run's parameters, checked (the error names the parameter)."""
    return validate_params(dict(context["params"]))


class PipelineOperator(BaseOperator):
    """Base of the pipeline's operators: one AWS connection id, config from the run's Params."""

    def __init__(self, *, aws_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    def s3(self, config: dict[str, Any]) -> S3Hook:
        """An S3 hook on the pipeline's connection, in the configured region."""
        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=config["region"])

    @staticmethod
    def layout(config: dict[str, Any]) -> BucketLayout:
        """The bucket layout for this run's configuration."""
        return BucketLayout(bucket=config["bucket"], input_prefix=config["input_prefix"])
