"""Training, tuning and picking the model: the DAG's tasks, cheap to declare.

Training and tuning are the provider's SageMaker operators, made retry-safe
(``TrainingJobOperator`` and ``TuningJobOperator`` in ``training_jobs.py``): a retried task
re-attaches to the job its run started instead of paying for another. Those import the provider's
SageMaker module, and with it boto3 (about a second of CPU), so the DAG declares the tasks below
instead: the same arguments, template fields and hook, and, when the task runs (or resumes after
waiting in the triggerer), the work done by the provider-based operator, built from this task's
rendered arguments (see ``operators/aws.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from deeplens_pipeline import training
from deeplens_pipeline.airflow_compat import AirflowException, BaseBranchOperator
from deeplens_pipeline.naming import training_job_name, tuning_job_name
from deeplens_pipeline.operators.aws import AwsOperator, aws_template_fields, import_class, run_operator
from deeplens_pipeline.operators.base import (
    DEFAULT_CONN_ID,
    ParamsSerializedOnce,
    PipelineOperator,
    run_config,
    run_scope,
)

SAGEMAKER_HOOK = "airflow.providers.amazon.aws.hooks.sagemaker.SageMakerHook"


class ChooseTrainingOperator(ParamsSerializedOnce, BaseBranchOperator):
    """One training job, or a tuning job, as ``params.training_mode`` says: the other branch is skipped.

    (A ``@task.branch`` function would do the same, but ``task`` imports the standard provider's
    Python operators, and Airflow renders a decorated task's Params twice more at every parse.)
    """

    def choose_branch(self, context: Any) -> str:
        return "tune_model" if context["params"]["training_mode"] == "tune" else "train_model"


class _SageMakerJobTask(AwsOperator):
    """A SageMaker job task: declared like the provider's operator, run by ``implementation``.

    The class attributes below are the provider's ``SageMakerBaseOperator``'s, so the task looks
    the same in the UI and the serialized DAG; a test checks them against the implementation.
    """

    implementation: ClassVar[str]
    """The import path of the provider-based operator that does this task's work."""
    aws_hook_class = SAGEMAKER_HOOK
    template_fields = (*aws_template_fields("config"), "split")
    template_ext = ()
    template_fields_renderers: ClassVar[dict[str, str]] = {"config": "json"}
    ui_color = "#ededed"

    def __init__(self, *, split: Any, aws_conn_id: str | None = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.split = split
        self.config: dict[str, Any] = {}  # the job's configuration: built from the run's Params
        self.deferrable = True
        self.ran: Any = None  # the operator that last did this task's work (its lineage is the task's)

    def implementation_operator(self) -> Any:
        """The provider-based operator for this task, from its (rendered) arguments."""
        return import_class(self.implementation)(
            task_id=self.task_id,
            split=self.split,
            execution_timeout=self.execution_timeout,
            **self.aws_connection,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        self.ran = self.implementation_operator()
        return run_operator(self.ran, "execute", context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: the provider's checks of the event, then the job's description."""
        self.ran = self.implementation_operator()
        return run_operator(self.ran, "execute_complete", context, event)


class DeepLensTrainingOperator(_SageMakerJobTask):
    """Train the built-in object detector on this run's split; re-attach on retry."""

    implementation = "deeplens_pipeline.operators.training_jobs.TrainingJobOperator"

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The provider's lineage of the training job (its input channels and model artefact)."""
        return self.ran.get_openlineage_facets_on_complete(task_instance)


class DeepLensTuningOperator(_SageMakerJobTask):
    """Tune learning rate and optimizer for validation:mAP; re-attach on retry."""

    implementation = "deeplens_pipeline.operators.training_jobs.TuningJobOperator"


class PickModelOperator(PipelineOperator):
    """The model this run produced: the training job's, or the tuning job's best training job.

    Reads the jobs by their run-derived names, so it needs no XCom from the skipped branch.
    Returns the job names, the model artefact URI and its validation mAP.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        config = run_config(context)
        hook = SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=config["region"])
        tuning_name = None
        if config["training_mode"] == "tune":
            tuning_name = tuning_job_name(run_scope(context))
            tuning = hook.describe_tuning_job(tuning_name)
            best = tuning.get("BestTrainingJob")
            if not best:
                raise AirflowException(
                    f"Tuning job {tuning_name} has no best training job "
                    f"({tuning['HyperParameterTuningJobStatus']})"
                )
            name = best["TrainingJobName"]
            self.log.info(
                "Best training job of %s: %s with %s", tuning_name, name, best.get("TunedHyperParameters")
            )
        else:
            name = training_job_name(run_scope(context))
        job = hook.describe_training_job(name)
        if job["TrainingJobStatus"] != "Completed":
            raise AirflowException(f"Training job {name} is {job['TrainingJobStatus']}, not Completed")
        artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if not artifact:
            raise AirflowException(f"Training job {name} completed without a model artefact")
        warm_start = self._warm_start(context, job, "tune_model" if tuning_name else "train_model")
        score = training.final_metric(job)
        self.log.info("Model of %s: %s (%s=%s)", name, artifact, training.METRIC_NAME, score)
        cost = training.billing(job)
        self.log.info(
            "Training job %s: %s billable seconds of %s trained%s",
            name,
            cost["billable_seconds"],
            cost["training_seconds"],
            f" on spot capacity, {cost['spot_saving_percent']}% saved" if cost["spot"] else "",
        )
        return {
            "training_job": name,
            "tuning_job": tuning_name,
            "model_artifact": artifact,
            "validation_map": score,
            "hyperparameters": job.get("HyperParameters", {}),
            **training.billing(job),
            "warm_start": warm_start,
        }

    def _warm_start(self, context: Any, job: dict[str, Any], task_id: str) -> dict[str, Any]:
        """Whether the picked job trained from a model (its ``model`` channel says) and, as the
        training or tuning task recorded it, from which registry version and why."""
        uri = training.warm_start_of(job)
        ti = context.get("ti")
        recorded = (ti.xcom_pull(task_ids=task_id, key="warm_start") if ti is not None else None) or {}
        result = {"warm_started": uri is not None, "model_artifact": uri, "version": None, "reason": ""}
        if recorded.get("model_artifact") == uri:
            result.update(version=recorded.get("version"), reason=recorded.get("reason", ""))
        if not result["reason"]:
            result["reason"] = f"trained from {uri}" if uri else "trained from the pretrained backbone"
        self.log.info("Model of %s: %s", job["TrainingJobName"], result["reason"])
        return result
