"""What every pipeline operator shares: the checked run configuration and the AWS connection."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from deeplens_pipeline.airflow_compat import BaseOperator
from deeplens_pipeline.layout import BucketLayout
from deeplens_pipeline.naming import RunScope
from deeplens_pipeline.params import validate_params

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

DEFAULT_CONN_ID = "aws_deeplens"
ENVIRONMENT_ENV = "DEEPLENS_ENVIRONMENT"
ENVIRONMENT_VARIABLE = "deeplens_environment_id"


def run_config(context: Any) -> dict[str, Any]:
    """The DAG run's parameters, checked (the error names the parameter)."""
    return validate_params(dict(context["params"]))


def environment_id(*, create: bool = False) -> str:
    """What tells this Airflow environment apart from others using the same AWS account.

    ``$DEEPLENS_ENVIRONMENT`` when set (e.g. the MWAA environment's name); otherwise a random id
    kept in the Airflow Variable ``deeplens_environment_id``, which only the run's first task
    creates (``create``): a later task that finds it gone fails instead of naming jobs anew, since
    every task of a run must compute the same job names.
    """
    value = os.environ.get(ENVIRONMENT_ENV, "").strip()
    if value:
        return value
    from deeplens_pipeline.airflow_compat import Variable

    value = Variable.get(ENVIRONMENT_VARIABLE, default=None)
    if value:
        return value
    if not create:
        raise RuntimeError(
            f"the Airflow Variable {ENVIRONMENT_VARIABLE} (this environment's id in job names) is missing: "
            f"it was deleted after the run started; set it back, or set ${ENVIRONMENT_ENV}"
        )
    value = uuid.uuid4().hex
    Variable.set(ENVIRONMENT_VARIABLE, value, description="Keeps this environment's AWS job names apart")
    return value


def run_scope(context: Any, *, create_environment: bool = False) -> RunScope:
    """This task's run, DAG and environment: what job names and idempotency tokens derive from."""
    dag_run = context.get("dag_run")
    dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", None)
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None)
    if not dag_id or not run_id:
        raise ValueError("the task context names no DAG or no run: job names derive from both")
    return RunScope(environment_id(create=create_environment), dag_id, run_id)


def xcom_outputs(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without its ``None`` entries: what a ``multiple_outputs`` task returns.

    Airflow 3.0.x refuses to store a ``None`` XCom pushed per key (its execution API answers 422,
    apache/airflow#55062), so the task would fail on MWAA 3.0.6; a key left out reads as ``None``
    (``xcom_pull`` and ``dict.get``) on every version.
    """
    return {key: value for key, value in values.items() if value is not None}


def read_or_empty(s3: S3Hook, bucket: str, key: str) -> str:
    """The object's text, or "" when it does not exist yet."""
    return s3.read_key(key, bucket) if s3.check_for_key(key, bucket) else ""


class ParamsSerializedOnce:
    """Mixin for the DAG's operators: Airflow serialises the task's Params once, not three times.

    Every task carries a copy of the DAG's Params, and the DAG processor serialises the DAG at
    every parse. For each task, Airflow 3.3.1's serializer (``serialize_to_json``) first treats
    ``params`` as one of the generic fields: it compares the task's ``ParamsDict`` with ``{}`` and
    turns it into text, each of which validates every Param against its JSON schema (about a
    millisecond a Param: some two seconds of CPU per parse for this DAG's tasks and Params); then
    ``_serialize_node`` overwrites that field with the Params' own serialisation. Leaving ``params``
    out of the generic fields (as sensors add fields of their own) skips the two discarded passes;
    the serialized DAG is the same (tests/dags/test_parse_cost.py compares it with and without).
    """

    @classmethod
    def get_serialized_fields(cls) -> frozenset[str]:
        return super().get_serialized_fields() - {"params"}  # type: ignore[misc]


class PipelineOperator(ParamsSerializedOnce, BaseOperator):
    """Base of the pipeline's operators: one AWS connection id, config from the run's Params."""

    def __init__(self, *, aws_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    def s3(self, config: dict[str, Any]) -> S3Hook:
        """An S3 hook on the pipeline's connection, in the configured region."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # boto3: when a task runs, not at parse

        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=config["region"])

    @staticmethod
    def layout(config: dict[str, Any]) -> BucketLayout:
        """The bucket layout for this run's configuration."""
        return BucketLayout(bucket=config["bucket"], input_prefix=config["input_prefix"])
