"""Training, tuning and pick-model operators against the emulator: no duplicate paid jobs."""

import time
from types import SimpleNamespace

import boto3
import pytest

from deeplens_pipeline.airflow_compat import AirflowException, AirflowFailException, TaskDeferred
from deeplens_pipeline.naming import RunScope, training_job_name, tuning_job_name
from deeplens_pipeline.operators.base import run_scope
from deeplens_pipeline.operators.training import (
    ChooseTrainingOperator,
    DeepLensTrainingOperator,
    DeepLensTuningOperator,
    PickModelOperator,
)
from emulator.sample_dataset import generate_sample_dataset
from tests.conftest import stage_sample_split

BUCKET = "deeplens-train-op"
DAG_ID = "deeplens_object_detection"


def _scope(run_id: str) -> RunScope:
    return run_scope({"run_id": run_id, "dag_run": SimpleNamespace(dag_id=DAG_ID)})


@pytest.fixture(scope="module")
def split(emulator, tmp_path_factory):
    from emulator.seed import ensure_role

    iam = boto3.client("iam", endpoint_url=emulator.url, region_name="us-east-1")
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")  # the default params.role_arn
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=5)
    return stage_sample_split(emulator.url, BUCKET, root, n_train=3)


def _context(split, run_id, **params):
    return {
        "run_id": run_id,
        "dag_run": SimpleNamespace(dag_id=DAG_ID),
        "params": {
            "bucket": BUCKET,
            "classes": split["classes"],
            "image_shape": 300,
            "epochs": 2,
            "lr_scheduler_step": "1",
            "poll_seconds": 1,
            "tuning_max_jobs": 2,
            **params,
        },
    }


def _wait(describe, key):
    for _ in range(600):
        job = describe()
        if job[key] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def _trained(split, run_id):
    """The context of a run whose training job has finished (created here, so tests run alone)."""
    ctx = _context(split, run_id)
    op = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    sm = boto3.client("sagemaker", endpoint_url=op.hook.conn.meta.endpoint_url, region_name="us-east-1")
    _wait(
        lambda: sm.describe_training_job(TrainingJobName=training_job_name(_scope(run_id))),
        "TrainingJobStatus",
    )
    return ctx


def test_training_creates_once_and_reattaches(split, aws_conn):
    ctx = _context(split, "manual__2026-11-24T06:00:00+00:00")
    name = training_job_name(run_scope(ctx))
    op = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.trigger.waiter_delay == 1
    assert deferred.value.trigger.attempts >= 12 * 3600
    sm = boto3.client("sagemaker", endpoint_url=op.hook.conn.meta.endpoint_url, region_name="us-east-1")
    job = sm.describe_training_job(TrainingJobName=name)
    assert job["HyperParameters"]["num_training_samples"] == "3"
    with pytest.raises(TaskDeferred):  # a retry while it runs: same job, waited for again
        DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1").execute(ctx)
    assert [
        j["TrainingJobName"] for j in sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    ] == [name]
    _wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")
    done = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1").execute(ctx)
    assert done["Training"]["TrainingJobName"] == name
    picked = PickModelOperator(task_id="pick_model").execute(ctx)
    assert picked["training_job"] == name and picked["tuning_job"] is None
    assert picked["model_artifact"].endswith(f"/{name}/output/model.tar.gz")
    assert 0.0 <= picked["validation_map"] <= 1.0


def test_missing_manifest_fails_before_any_job(split, aws_conn):
    bad = dict(split, validation_uri=f"s3://{BUCKET}/m/train.manifest.gone")
    ctx = _context(split, "manual__2026-11-24T07:00:00+00:00")
    op = DeepLensTrainingOperator(task_id="train_model", split=bad, region_name="us-east-1")
    with pytest.raises(AirflowException, match="does not exist"):  # the provider checks S3 first
        op.execute(ctx)
    sm = boto3.client("sagemaker", endpoint_url=op.hook.conn.meta.endpoint_url, region_name="us-east-1")
    assert sm.list_training_jobs(NameContains=training_job_name(run_scope(ctx)))["TrainingJobSummaries"] == []


def test_failed_job_is_reported_not_restarted(split, aws_conn):
    from deeplens_pipeline.params import validate_params
    from deeplens_pipeline.training import training_job_config

    ctx = _context(split, "manual__2026-11-24T07:30:00+00:00")
    name = training_job_name(run_scope(ctx))
    op = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1")
    sm = boto3.client("sagemaker", endpoint_url=op.hook.conn.meta.endpoint_url, region_name="us-east-1")
    sm.create_training_job(
        **training_job_config(
            job_name=name,
            params=validate_params(ctx["params"]),
            train_uri=split["train_uri"],
            validation_uri=f"s3://{BUCKET}/m/gone.manifest",
            output_uri=f"s3://{BUCKET}/output/",
            num_training_samples=3,
        )
    )
    _wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")
    # The first attempt, resumed from the trigger's error event, fails at once with AWS's reason,
    # and never retries (AirflowFailException): the job's name is spent.
    with pytest.raises(AirflowFailException, match=r"is Failed: .*gone.manifest.*new DAG run"):
        op.execute_complete(ctx, {"status": "error", "message": "Training job failed"})
    with pytest.raises(AirflowFailException, match=r"is Failed: .*gone.manifest"):
        op.execute(ctx)
    assert len(sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]) == 1


def test_tuning_then_pick_the_best(split, aws_conn):
    ctx = _context(split, "manual__2026-11-24T08:00:00+00:00", training_mode="tune")
    name = tuning_job_name(run_scope(ctx))
    op = DeepLensTuningOperator(task_id="tune_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    sm = boto3.client("sagemaker", endpoint_url=op.hook.conn.meta.endpoint_url, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        DeepLensTuningOperator(task_id="tune_model", split=split, region_name="us-east-1").execute(ctx)
    job = _wait(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
    )
    assert job["HyperParameterTuningJobStatus"] == "Completed"
    picked = PickModelOperator(task_id="pick_model").execute(ctx)
    assert picked["tuning_job"] == name
    assert picked["training_job"] == job["BestTrainingJob"]["TrainingJobName"]


def test_repack_uploads_beside_the_original_and_keeps_a_backup(split, aws_conn):
    import io
    import tarfile

    from deeplens_pipeline.operators.model import RepackModelOperator

    ctx = _trained(split, "manual__2026-11-24T08:00:00+00:00")
    picked = PickModelOperator(task_id="pick_model").execute(ctx)
    op = RepackModelOperator(task_id="repack_model", model=picked)
    result = op.execute(ctx)
    assert result["deploy_model_uri"] == picked["model_artifact"].replace(
        "model.tar.gz", "deploy-model.tar.gz"
    )
    assert result["model_name"] == "deploy_deeplens_model"
    s3 = boto3.client(
        "s3", endpoint_url=op.s3({"region": "us-east-1"}).conn.meta.endpoint_url, region_name="us-east-1"
    )
    key = result["deploy_model_uri"].split("/", 3)[3]
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = sorted(archive.getnames())
    assert "deploy_deeplens_model-symbol.json" in names and "deploy_deeplens_model-0000.params" in names
    original_key = picked["model_artifact"].split("/", 3)[3]
    original = s3.get_object(Bucket=BUCKET, Key=original_key)["Body"].read()

    again = RepackModelOperator(task_id="repack_model", model=picked).execute(ctx)
    assert again["sha256"] == result["sha256"]  # reproducible: same bytes, nothing new uploaded
    assert result["uploaded"] and not again["uploaded"]

    ctx["params"]["replace_original_model"] = True
    replaced = RepackModelOperator(task_id="repack_model", model=picked).execute(ctx)
    assert replaced["original_backup_uri"].endswith("model.tar.gz.orig")
    assert s3.get_object(Bucket=BUCKET, Key=original_key + ".orig")["Body"].read() == original
    assert s3.get_object(Bucket=BUCKET, Key=original_key)["Body"].read() == body


def test_the_trigger_polls_in_the_runs_region_not_the_connections():
    """The provider builds its SageMaker trigger without a region: ours passes params.region on."""
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

    op = DeepLensTrainingOperator(task_id="t", split={}, region_name="eu-west-1").implementation_operator()
    trigger = SageMakerTrigger(job_name="j", job_type="Training", aws_conn_id="aws_deeplens")
    assert getattr(trigger, "region_name", None) is None  # what the provider's training operator builds
    with pytest.raises(TaskDeferred) as deferred:
        op.defer(trigger=trigger, method_name="execute_complete")
    assert deferred.value.trigger.region_name == "eu-west-1"
    assert deferred.value.trigger.serialize()[1]["region_name"] == "eu-west-1"


@pytest.mark.parametrize(("mode", "branch"), [("train", "train_model"), ("tune", "tune_model")])
def test_choose_training_follows_the_training_mode(mode, branch):
    """The branch task: the other branch is skipped (BaseBranchOperator), as params.training_mode says."""
    chooser = ChooseTrainingOperator(task_id="choose_training")
    assert chooser.choose_branch({"params": {"training_mode": mode}}) == branch


def test_a_failed_tuning_job_gives_its_failed_training_jobs_reasons(split, aws_conn):
    from deeplens_pipeline.operators.training_jobs import failure_reasons
    from deeplens_pipeline.params import validate_params
    from deeplens_pipeline.training import tuning_job_config

    ctx = _context(split, "manual__2026-11-24T07:45:00+00:00")
    name = tuning_job_name(run_scope(ctx))
    op = DeepLensTuningOperator(task_id="tune_model", split=split, region_name="us-east-1")
    sm = boto3.client("sagemaker", endpoint_url=op.hook.conn.meta.endpoint_url, region_name="us-east-1")
    sm.create_hyper_parameter_tuning_job(
        **tuning_job_config(
            job_name=name,
            params=validate_params(ctx["params"]),
            train_uri=split["train_uri"],
            validation_uri=f"s3://{BUCKET}/m/gone.manifest",
            output_uri=f"s3://{BUCKET}/output/",
            num_training_samples=3,
        )
    )
    job = _wait(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
    )
    assert job["HyperParameterTuningJobStatus"] == "Failed"
    status, reasons = failure_reasons(op.implementation_operator().hook, "tuning", name)
    assert status == "Failed" and f"{name}-" in reasons and "gone.manifest" in reasons
    with pytest.raises(AirflowFailException, match=r"Tuning job .* is Failed: .*gone.manifest"):
        op.execute_complete(ctx, {"status": "error"})
