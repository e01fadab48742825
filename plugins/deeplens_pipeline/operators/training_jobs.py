"""The training and tuning tasks' work: the provider's SageMaker operators, made retry-safe.

The provider's operators append a timestamp to a name that already exists, so a retried task
would start (and pay for) a second job. These subclasses name jobs from the run id and, when the
job exists, re-attach to it: wait for it if it runs, return it if it completed, fail with its
reason if it failed. Waiting is deferred to the triggerer with a poll budget that covers the job's
maximum runtime (the provider's default gives up after 60 polls).

The DAG's tasks, ``DeepLensTrainingOperator`` and ``DeepLensTuningOperator`` (``training.py``), run
these when they run: this module imports the provider's SageMaker operators, and with them boto3,
which parsing the DAG file must not (see ``operators/aws.py``).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerTrainingOperator,
    SageMakerTuningOperator,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

from deeplens_pipeline import training
from deeplens_pipeline.airflow_compat import AirflowException, AirflowFailException
from deeplens_pipeline.hooks.groundtruth import describe_or_none
from deeplens_pipeline.naming import training_job_name, tuning_job_name
from deeplens_pipeline.operators.base import DEFAULT_CONN_ID, run_config, run_scope
from deeplens_pipeline.registry import current_model, group_name
from deeplens_pipeline.triggers.sagemaker import SageMakerJobTrigger

RUNNING = ("InProgress", "Stopping")


def _poll_budget(config: dict[str, Any], jobs: int = 1) -> tuple[int, int]:
    """(seconds between polls, polls) covering ``jobs`` runs of the maximum runtime, plus an hour."""
    poll = config["poll_seconds"]
    seconds = jobs * config["max_runtime_hours"] * 3600 + 3600
    return poll, max(1, math.ceil(seconds / poll))


def _channels(split: dict[str, Any]) -> dict[str, Any]:
    return {
        "train_uri": split["train_uri"],
        "validation_uri": split["validation_uri"],
        "num_training_samples": split["train_count"],
    }


WARM_START_KEY = "warm_start"
"""The XCom key under which the training and tuning tasks record :meth:`WarmStart.as_dict`."""


def decide_warm_start(hook: Any, config: dict[str, Any], context: Any, log: Any) -> training.WarmStart:
    """Warm start or not, from the registry's current model (one ListModelPackages and one
    DescribeModelPackage call, none when ``params.warm_start`` is off); logged and recorded as
    this task's ``warm_start`` XCom."""
    current = None
    if config.get("warm_start", True):
        scope = run_scope(context)
        current = current_model(hook.conn, group_name(scope.environment, scope.dag_id))
    decision = training.warm_start_decision(config, current)
    log.info("Warm start: %s", decision.reason)
    record_warm_start(context, decision.as_dict())
    return decision


def record_warm_start(context: Any, value: dict[str, Any]) -> None:
    """Push ``value`` as this task's ``warm_start`` XCom (skipped outside a task instance)."""
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=WARM_START_KEY, value={k: v for k, v in value.items() if v is not None})


def reattached_warm_start(context: Any, description: dict[str, Any]) -> None:
    """On re-attaching, record what the existing job was started with (its model channel)."""
    uri = training.warm_start_of(description)
    record_warm_start(
        context,
        {
            "warm_started": uri is not None,
            "model_artifact": uri,
            "reason": "re-attached to a job started "
            + (f"from {uri}" if uri else "from the pretrained backbone"),
        },
    )


def failure_reasons(hook: Any, kind: str, name: str) -> tuple[str, str]:
    """(status, reasons) of a training or tuning job; a tuning job's reasons include those of its
    failed training jobs (at most five, each described: ListTrainingJobs carries no reason)."""
    if kind == "training":
        job = hook.describe_training_job(name)
        return job["TrainingJobStatus"], job.get("FailureReason") or "no reason given"
    job = hook.describe_tuning_job(name)
    reasons = [job.get("FailureReason") or ""]
    failed = hook.conn.list_training_jobs(NameContains=name, StatusEquals="Failed")
    for summary in failed.get("TrainingJobSummaries", [])[:5]:
        child = hook.describe_training_job(summary["TrainingJobName"])
        reasons.append(f"{summary['TrainingJobName']}: {child.get('FailureReason') or 'no reason given'}")
    return job["HyperParameterTuningJobStatus"], "; ".join(r for r in reasons if r) or "no reason given"


class _FailsOnceWithTheReason:
    """A job that ended Failed or Stopped fails the task at once with AWS's FailureReason (a tuning
    job's: its failed training jobs' too), in the first attempt's log and never retried: its name
    is spent, and a retry could only find it failed again. Other errors (a trigger that gave up on
    a job still running) retry like any task, and the retry re-attaches."""

    kind: str
    hook: Any

    def job_name(self, context: Any) -> str:
        raise NotImplementedError

    def terminal(self, name: str, status: str, reasons: str) -> AirflowFailException:
        return AirflowFailException(
            f"{self.kind.capitalize()} job {name} is {status}: {reasons}. "
            "Its name cannot be used again: trigger a new DAG run after fixing the cause."
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if event is not None and event.get("status") != "success":
            name = self.job_name(context)
            status, reasons = failure_reasons(self.hook, self.kind, name)
            if status not in RUNNING:
                raise self.terminal(name, status, reasons)
            raise AirflowException(f"{self.kind.capitalize()} job {name} is still {status}: {event}")
        return super().execute_complete(context, event)  # type: ignore[misc]


class _TriggersInTheRunsRegion:
    """The provider's training operator defers on a trigger built without a region (so it would
    poll in the connection's region while the job was created in ``params.region``) and that polls
    at once: swap in ours, in the run's region and waiting one interval first."""

    region_name: str | None

    def defer(self, *, trigger: Any, **kwargs: Any) -> None:
        if isinstance(trigger, SageMakerTrigger) and not isinstance(trigger, SageMakerJobTrigger):
            trigger = SageMakerJobTrigger.from_provider(trigger, self.region_name)
        super().defer(trigger=trigger, **kwargs)  # type: ignore[misc]


class TrainingJobOperator(_FailsOnceWithTheReason, _TriggersInTheRunsRegion, SageMakerTrainingOperator):
    """Train the built-in object detector on this run's split; re-attach on retry."""

    kind = "training"

    def job_name(self, context: Any) -> str:
        return training_job_name(run_scope(context))

    template_fields = (*SageMakerTrainingOperator.template_fields, "split")

    def __init__(self, *, split: Any, aws_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(
            config={},
            aws_conn_id=aws_conn_id,
            deferrable=True,
            check_if_job_exists=False,
            print_log=False,
            **kwargs,
        )
        self.split = split

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        name = training_job_name(run_scope(context))
        self.check_interval, self.max_attempts = _poll_budget(config)
        existing = describe_or_none(self.hook.describe_training_job, name)
        if existing is None:
            self.config = training.training_job_config(
                job_name=name,
                params=config,
                output_uri=f"s3://{config['bucket']}/output/",
                warm_start=decide_warm_start(self.hook, config, context, self.log),
                **_channels(self.split),
            )
            self.log.info("Training job %s: %s", name, self.config["HyperParameters"])
            return super().execute(context)
        reattached_warm_start(context, existing)
        status = existing["TrainingJobStatus"]
        self.log.info("Training job %s exists (%s): re-attaching, not starting another", name, status)
        if status == "Completed":
            return self.serialize_result(name)
        if status not in RUNNING:
            raise self.terminal(name, *failure_reasons(self.hook, self.kind, name))
        self.defer(
            trigger=SageMakerJobTrigger(
                job_name=name,
                job_type="Training",
                waiter_delay=self.check_interval,
                waiter_max_attempts=self.max_attempts,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
            ),
            method_name="execute_complete",
        )


class TuningJobOperator(_FailsOnceWithTheReason, SageMakerTuningOperator):
    """Tune learning rate and optimizer for validation:mAP; re-attach on retry."""

    kind = "tuning"

    def job_name(self, context: Any) -> str:
        return tuning_job_name(run_scope(context))

    template_fields = (*SageMakerTuningOperator.template_fields, "split")

    def __init__(self, *, split: Any, aws_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(config={}, aws_conn_id=aws_conn_id, deferrable=True, **kwargs)
        self.split = split

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        name = tuning_job_name(run_scope(context))
        poll, attempts = _poll_budget(config, jobs=config["tuning_max_jobs"])
        existing = describe_or_none(self.hook.describe_tuning_job, name)
        if existing is None:
            self.config = training.tuning_job_config(
                job_name=name,
                params=config,
                output_uri=f"s3://{config['bucket']}/output/",
                warm_start=decide_warm_start(self.hook, config, context, self.log),
                **_channels(self.split),
            )
            self.preprocess_config()
            self.log.info("Creating tuning job %s (%d training jobs)", name, config["tuning_max_jobs"])
            self.hook.create_tuning_job(self.config, wait_for_completion=False)
        else:
            reattached_warm_start(context, existing.get("TrainingJobDefinition") or {})
            status = existing["HyperParameterTuningJobStatus"]
            self.log.info("Tuning job %s exists (%s): re-attaching, not starting another", name, status)
            if status == "Completed":
                return {"Tuning": existing}
            if status not in RUNNING:
                raise self.terminal(name, *failure_reasons(self.hook, self.kind, name))
        self.defer(
            trigger=SageMakerJobTrigger(
                job_name=name,
                job_type="tuning",
                waiter_delay=poll,
                waiter_max_attempts=attempts,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=poll * attempts),
        )
