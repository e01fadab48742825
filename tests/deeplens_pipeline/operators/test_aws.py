"""The DAG's AWS tasks keep the provider's contract without importing the provider at parse time."""

import pytest
from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields as provider_template_fields

from deeplens_pipeline.airflow_compat import AIRFLOW_3, BaseOperator
from deeplens_pipeline.operators.aws import AwsOperator, aws_template_fields, run_operator
from deeplens_pipeline.operators.deploy import DeployToDeviceOperator, PublishInferenceLambdaOperator
from deeplens_pipeline.operators.training import DeepLensTrainingOperator, DeepLensTuningOperator
from deeplens_pipeline.operators.training_jobs import TrainingJobOperator, TuningJobOperator


def test_template_fields_are_the_providers():
    assert aws_template_fields() == provider_template_fields()
    assert aws_template_fields("b", "a", "verify") == provider_template_fields("b", "a", "verify")


@pytest.mark.parametrize(
    ("task", "implementation"),
    [(DeepLensTrainingOperator, TrainingJobOperator), (DeepLensTuningOperator, TuningJobOperator)],
)
def test_a_sagemaker_task_is_declared_like_the_operator_that_does_its_work(task, implementation):
    """Same template fields, renderers and colour: the UI and the serialized DAG cannot tell."""
    for name in ("template_fields", "template_ext", "template_fields_renderers", "ui_color"):
        assert getattr(task, name) == getattr(implementation, name), name
    declared = task(task_id="t", split={"train_uri": "s3://b/t"}, region_name="eu-west-1", verify=False)
    built = declared.implementation_operator()
    assert isinstance(built, implementation)
    for name in ("task_id", "split", "aws_conn_id", "region_name", "verify", "botocore_config", "config"):
        assert getattr(built, name) == getattr(declared, name), name
    assert declared.deferrable and built.deferrable
    assert isinstance(declared.hook, SageMakerHook) and declared.hook.region_name == "eu-west-1"


def test_the_hook_is_the_named_provider_hook_on_the_operators_connection():
    operator = PublishInferenceLambdaOperator(
        task_id="p",
        function_name="deeplens-x",
        role_arn="arn:aws:iam::123456789012:role/r",
        model_name="m",
        labels=["a"],
        image_shape=300,
        region_name="eu-west-1",
        botocore_config={"retries": {"max_attempts": 2}},
    )
    assert isinstance(operator.hook, LambdaHook)
    assert operator.hook.aws_conn_id == "aws_deeplens" and operator.hook.region_name == "eu-west-1"
    assert operator.hook.config.retries == {"max_attempts": 2}
    assert issubclass(DeployToDeviceOperator, AwsOperator)


class _Work(BaseOperator):
    def execute(self, context):
        return "done"


def test_the_work_runs_as_the_tasks_own_not_as_a_nested_operator(monkeypatch):
    """Outside unit-test mode Airflow refuses (or logs) an operator's execute called by another's."""
    if not AIRFLOW_3:  # Airflow 2: the task instance passes a sentinel keyword argument
        from airflow.models.baseoperator import ExecutorSafeguard

        monkeypatch.setattr(ExecutorSafeguard, "test_mode", False)
        work = _Work(task_id="work", allow_nested_operators=False)
        with pytest.raises(Exception, match="cannot be called outside TaskInstance"):
            work.execute({})
        assert run_operator(work, "execute", {}) == "done"
        return
    from airflow.sdk.bases.operator import ExecutorSafeguard

    monkeypatch.setattr(ExecutorSafeguard, "test_mode", False)
    work = _Work(task_id="work", allow_nested_operators=False)
    token = ExecutorSafeguard.tracker.set(BaseOperator(task_id="the_task"))  # as the task runner does
    try:
        with pytest.raises(RuntimeError, match="outside of the Task Runner"):
            work.execute({})
        assert run_operator(work, "execute", {}) == "done"
    finally:
        ExecutorSafeguard.tracker.reset(token)
