"""Training and tuning jobs in the emulator do real work in the ML tools environment (fast mode)."""

import io
import tarfile

import boto3
import pytest
from botocore.exceptions import ClientError

from deeplens_pipeline.params import validate_params
from deeplens_pipeline.training import training_job_config, tuning_job_config
from emulator.sample_dataset import generate_sample_dataset
from emulator.seed import ensure_role
from tests.conftest import stage_sample_split
from tests.emulator.helpers import wait_for_job as wait

BUCKET = "deeplens-train-test"


@pytest.fixture(scope="module")
def data(emulator, tmp_path_factory):
    # The jobs run as the default params.role_arn, with the project's SageMaker execution role policy.
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name="us-east-1")
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=6)
    split = stage_sample_split(emulator.url, BUCKET, root, n_train=4)
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    params = validate_params(
        {
            "bucket": BUCKET,
            "classes": split["classes"],
            "image_shape": 300,
            "epochs": 2,
            "lr_scheduler_step": "1",
            "tuning_max_jobs": 3,
        }
    )
    return {
        "s3": s3,
        "params": params,
        "sm": boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1"),
        "logs": boto3.client("logs", endpoint_url=emulator.url, region_name="us-east-1"),
    }


ARGS = dict(
    train_uri=f"s3://{BUCKET}/m/train.manifest",
    validation_uri=f"s3://{BUCKET}/m/validation.manifest",
    output_uri=f"s3://{BUCKET}/output/",
    num_training_samples=4,
)


def test_training_job_runs_and_writes_a_sagemaker_layout_artifact(data):
    sm, s3 = data["sm"], data["s3"]
    name = "deeplens-train-emulated"
    sm.create_training_job(**training_job_config(job_name=name, params=data["params"], **ARGS))
    first = sm.describe_training_job(TrainingJobName=name)
    assert first["TrainingJobStatus"] == "InProgress"
    assert "ModelArtifacts" not in first
    job = wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{BUCKET}/output/{name}/output/model.tar.gz"
    (metric,) = job["FinalMetricDataList"]
    assert metric["MetricName"] == "validation:mAP" and 0.0 <= metric["Value"] <= 1.0
    body = s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert sorted(archive.getnames()) == [
            "hyperparams.json",
            "model_algo_1-0000.params",
            "model_algo_1-symbol.json",
        ]
    streams = data["logs"].describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name
    )["logStreams"]
    events = data["logs"].get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=streams[0]["logStreamName"]
    )["events"]
    assert any("validation mAP" in e["message"] for e in events)
    with pytest.raises(ClientError, match="ResourceInUse"):
        sm.create_training_job(**training_job_config(job_name=name, params=data["params"], **ARGS))


def test_training_job_fails_with_a_reason_when_a_manifest_is_missing(data):
    sm = data["sm"]
    args = dict(ARGS, validation_uri=f"s3://{BUCKET}/m/missing.manifest")
    sm.create_training_job(
        **training_job_config(job_name="deeplens-train-missing", params=data["params"], **args)
    )
    job = wait(
        lambda: sm.describe_training_job(TrainingJobName="deeplens-train-missing"), "TrainingJobStatus"
    )
    assert job["TrainingJobStatus"] == "Failed"
    assert "missing.manifest" in job["FailureReason"]


def test_tuning_job_runs_training_jobs_and_picks_the_best(data, emulator):
    sm = data["sm"]
    name = "deeplens-tune-emulated"
    sm.create_hyper_parameter_tuning_job(**tuning_job_config(job_name=name, params=data["params"], **ARGS))
    job = wait(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
        timeout=180,
    )
    assert job["HyperParameterTuningJobStatus"] == "Completed"
    runs = emulator.settings.max_tuning_jobs
    assert job["TrainingJobStatusCounters"]["Completed"] == runs
    best = job["BestTrainingJob"]
    assert best["TrainingJobName"].startswith(f"{name}-")
    assert set(best["TunedHyperParameters"]) == {"learning_rate", "optimizer"}
    assert best["TunedHyperParameters"]["optimizer"] in ("sgd", "adam", "rmsprop", "adadelta")
    trained = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert trained["ModelArtifacts"]["S3ModelArtifacts"].endswith(
        f"{best['TrainingJobName']}/output/model.tar.gz"
    )
    assert (
        best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        == trained["FinalMetricDataList"][0]["Value"]
    )


def test_spot_training_reports_billable_seconds_and_the_saving(data):
    """Managed spot: the request SageMaker accepts, then the billable and training seconds it reports."""
    from deeplens_pipeline.training import billing

    sm = data["sm"]
    params = validate_params({**data["params"], "use_spot_training": True, "max_wait_hours": 13})
    config = training_job_config(job_name="deeplens-train-spot", params=params, **ARGS)
    assert config["EnableManagedSpotTraining"] is True
    assert config["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 12 * 3600,
        "MaxWaitTimeInSeconds": 13 * 3600,
    }
    assert config["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/output/checkpoints/"
    sm.create_training_job(**config)
    job = wait(lambda: sm.describe_training_job(TrainingJobName="deeplens-train-spot"), "TrainingJobStatus")
    assert job["TrainingJobStatus"] == "Completed"
    cost = billing(job)
    assert cost["spot"] and 0 < cost["billable_seconds"] < cost["training_seconds"]
    assert cost["spot_saving_percent"] == round(
        (1 - job["BillableTimeInSeconds"] / job["TrainingTimeInSeconds"]) * 100, 1
    )


@pytest.mark.parametrize(
    ("stopping", "spot", "message"),
    [
        ({"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}, False, "only supported when"),
        ({"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 3600}, True, "greater than or equal to"),
        ({"MaxRuntimeInSeconds": 3600}, True, "must be present"),
    ],
)
def test_the_emulator_refuses_a_wait_sagemaker_refuses(data, stopping, spot, message):
    config = training_job_config(job_name="deeplens-train-bad-wait", params=data["params"], **ARGS)
    config["StoppingCondition"] = stopping
    if spot:
        config["EnableManagedSpotTraining"] = True
    with pytest.raises(ClientError) as err:
        data["sm"].create_training_job(**config)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert message in err.value.response["Error"]["Message"]
    definition = tuning_job_config(job_name="deeplens-tune-bad", params=data["params"], **ARGS)
    definition["TrainingJobDefinition"]["StoppingCondition"] = stopping
    if spot:
        definition["TrainingJobDefinition"]["EnableManagedSpotTraining"] = True
    with pytest.raises(ClientError, match=message):
        data["sm"].create_hyper_parameter_tuning_job(**definition)
