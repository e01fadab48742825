"""Incremental training in the emulator: the ``model`` channel seeds the job for real, and the job
fails as the built-in algorithm does when the channel is not what SageMaker takes (another content
type, a model of other num_classes or base_network, an object the execution role may not read).

AWS's rules: SageMaker Developer Guide, "Object Detection - MXNet", section Incremental Training
(channel "model", ContentType application/x-sagemaker-model, same base_network and num_classes).
"""

import io
import os
import subprocess
import tarfile

import boto3
import pytest

from deeplens_pipeline.params import validate_params
from deeplens_pipeline.training import WarmStart, training_job_config, tuning_job_config
from emulator.sample_dataset import generate_sample_dataset
from emulator.seed import ensure_role
from emulator.settings import REPO_ROOT
from tests.conftest import stage_sample_split
from tests.emulator.helpers import wait_for_job

BUCKET = "deeplens-warm-start-test"
OTHER_BUCKET = "models-elsewhere"  # outside the execution role's deeplens-* grant
ARGS = dict(
    train_uri=f"s3://{BUCKET}/m/train.manifest",
    validation_uri=f"s3://{BUCKET}/m/validation.manifest",
    output_uri=f"s3://{BUCKET}/output/",
    num_training_samples=4,
)


@pytest.fixture(scope="module")
def data(emulator, tmp_path_factory):
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name="us-east-1")
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=6)
    split = stage_sample_split(emulator.url, BUCKET, root, n_train=4)
    params = validate_params(
        {
            "bucket": BUCKET,
            "classes": split["classes"],
            "image_shape": 300,
            "epochs": 2,
            "lr_scheduler_step": "1",
        }
    )
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    name = "deeplens-warm-seed"
    sm.create_training_job(**training_job_config(job_name=name, params=params, **ARGS))
    seed = _wait(sm, name)
    assert seed["TrainingJobStatus"] == "Completed", seed.get("FailureReason")
    return {"sm": sm, "s3": s3, "params": params, "seed": seed}


def _wait(sm, name):
    return wait_for_job(
        lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus", timeout=180
    )


def _members(s3, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


def _warm(uri: str) -> WarmStart:
    return WarmStart(model_artifact=uri, version=1, reason="test")


def _altered_copy(emulator, s3, uri: str, tmp_path) -> str:
    """A copy of the model at ``uri`` with every weight changed (in the ML tools environment), so a
    job that ignored its model channel (fast mode: initial weights, seed 0) could not match it."""
    local, altered = tmp_path / "given.tar.gz", tmp_path / "altered.tar.gz"
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3.download_file(bucket, key, str(local))
    script = (
        "import sys\n"
        "from ml_tools.artifact import read_model_archive, write_model_archive\n"
        "symbol, arg, aux, hyper = read_model_archive(sys.argv[1])\n"
        "write_model_archive(sys.argv[2], symbol, {k: v * 0.5 + 0.01 for k, v in arg.items()}, aux, hyper)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
    subprocess.run(
        [emulator.settings.ml_python, "-c", script, str(local), str(altered)],
        check=True,
        env=env,
        timeout=120,
    )
    s3.upload_file(str(altered), BUCKET, "seeds/altered/model.tar.gz")
    return f"s3://{BUCKET}/seeds/altered/model.tar.gz"


def test_a_warm_started_job_starts_from_the_given_model(data, emulator, tmp_path):
    sm, s3 = data["sm"], data["s3"]
    cold = data["seed"]["ModelArtifacts"]["S3ModelArtifacts"]
    given = _altered_copy(emulator, s3, cold, tmp_path)
    config = training_job_config(
        job_name="deeplens-warm-ok", params=data["params"], warm_start=_warm(given), **ARGS
    )
    sm.create_training_job(**config)
    job = _wait(sm, "deeplens-warm-ok")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    (channel,) = [c for c in job["InputDataConfig"] if c["ChannelName"] == "model"]
    assert channel["ContentType"] == "application/x-sagemaker-model"
    assert job["HyperParameters"]["use_pretrained_model"] == "0"
    # The emulator's fast mode trains no further: the warm-started model is the given one, weight
    # for weight; a cold job (the seed job) has other weights.
    params_file = "model_algo_1-0000.params"
    warm = _members(s3, job["ModelArtifacts"]["S3ModelArtifacts"])[params_file]
    assert warm == _members(s3, given)[params_file]
    assert warm != _members(s3, cold)[params_file]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"content_type": "application/x-recordio"},
            "ClientError: Unable to initialize the algorithm. Failed to validate input data configuration: "
            "channel 'model' has ContentType 'application/x-recordio'",
        ),
        (
            {"input_mode": None},  # inherits the job's Pipe mode
            "ClientError: Unable to initialize the algorithm. Failed to validate input data configuration: "
            "channel 'model' is in Pipe mode",
        ),
        ({"classes": ["a", "b", "c"]}, "ClientError: incremental training needs the same num_classes"),
        ({"base_network": "vgg-16"}, "ClientError: incremental training needs the same base_network"),
        (
            {"elsewhere": True},
            "ClientError: Data download failed:Unable to list objects under s3://models-elsewhere/",
        ),
    ],
)
def test_the_job_fails_as_sagemaker_does_on_a_model_channel_it_refuses(data, change, reason):
    sm, s3 = data["sm"], data["s3"]
    given = data["seed"]["ModelArtifacts"]["S3ModelArtifacts"]
    if change.get("elsewhere"):
        s3.create_bucket(Bucket=OTHER_BUCKET)
        s3.copy_object(
            Bucket=OTHER_BUCKET,
            Key="seed/model.tar.gz",
            CopySource={"Bucket": BUCKET, "Key": given.split("/", 3)[3]},
        )
        given = f"s3://{OTHER_BUCKET}/seed/model.tar.gz"
    params = validate_params(
        {**data["params"], **{k: v for k, v in change.items() if k in ("classes", "base_network")}}
    )
    name = f"deeplens-warm-bad-{sorted(change)[0].replace('_', '-')}"
    config = training_job_config(job_name=name, params=params, warm_start=_warm(given), **ARGS)
    if "content_type" in change:
        config["InputDataConfig"][-1]["ContentType"] = change["content_type"]
    if "input_mode" in change:
        del config["InputDataConfig"][-1]["InputMode"]
    sm.create_training_job(**config)
    job = _wait(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(reason), job["FailureReason"]
    assert "ModelArtifacts" not in job or not job["ModelArtifacts"].get("S3ModelArtifacts")


def test_a_tuning_jobs_training_jobs_all_start_from_the_model(data, emulator):
    sm = data["sm"]
    given = data["seed"]["ModelArtifacts"]["S3ModelArtifacts"]
    params = validate_params({**data["params"], "tuning_max_jobs": 1})
    name = "deeplens-warm-tune"
    sm.create_hyper_parameter_tuning_job(
        **tuning_job_config(job_name=name, params=params, warm_start=_warm(given), **ARGS)
    )
    job = wait_for_job(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
        timeout=180,
    )
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    best = sm.describe_training_job(TrainingJobName=job["BestTrainingJob"]["TrainingJobName"])
    assert [
        c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in best["InputDataConfig"]
        if c["ChannelName"] == "model"
    ] == [given]
    assert best["FinalMetricDataList"][0]["Value"] == data["seed"]["FinalMetricDataList"][0]["Value"]
