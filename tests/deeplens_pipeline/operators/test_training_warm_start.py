"""The training and tuning tasks warm-start from the registry's current model only when allowed,
record whether and from which version in their ``warm_start`` XCom, and pick_model reports it."""

import json
import time
from types import SimpleNamespace

import boto3
import pytest

from deeplens_pipeline.airflow_compat import TaskDeferred
from deeplens_pipeline.naming import training_job_name, tuning_job_name
from deeplens_pipeline.operators.base import run_scope
from deeplens_pipeline.operators.training import (
    DeepLensTrainingOperator,
    DeepLensTuningOperator,
    PickModelOperator,
)
from deeplens_pipeline.registry import (
    META_BASE_NETWORK,
    META_IMAGE_SHAPE,
    current_model,
    encode_classes,
    group_name,
)
from emulator.sample_dataset import generate_sample_dataset
from tests.conftest import PIPELINE_ACCESS_KEY, stage_sample_split

BUCKET = "deeplens-warm-op"
DAG_ID = "deeplens_warm_start_test"  # its own model package group: no other test's versions


class FakeTaskInstance:
    """XComs pushed and pulled by task id, as a task instance keeps them."""

    def __init__(self, task_id: str, store: dict) -> None:
        self.task_id, self.store = task_id, store

    def xcom_push(self, key: str, value) -> None:
        self.store[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str):
        return self.store.get((task_ids, key))


def _wait(describe, key):
    for _ in range(900):
        job = describe()
        if job[key] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.2)
    raise AssertionError("job did not finish")


@pytest.fixture(scope="module")
def split(emulator, tmp_path_factory):
    from emulator.seed import ensure_role

    iam = boto3.client("iam", endpoint_url=emulator.url, region_name="us-east-1")
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=5)
    return stage_sample_split(emulator.url, BUCKET, root, n_train=3)


def _context(split, run_id, task_id, store, **params):
    return {
        "run_id": run_id,
        "dag_run": SimpleNamespace(dag_id=DAG_ID),
        "ti": FakeTaskInstance(task_id, store),
        "params": {
            "bucket": BUCKET,
            "classes": split["classes"],
            "image_shape": 300,
            "epochs": 2,
            "lr_scheduler_step": "1",
            "poll_seconds": 1,
            "tuning_max_jobs": 1,
            **params,
        },
    }


@pytest.fixture(scope="module")
def module_conn(emulator):
    """The pipeline's connection (as the ``aws_conn`` fixture sets it), for this module's fixtures."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_AWS_DEEPLENS",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": PIPELINE_ACCESS_KEY,
                    "password": "testing",
                    "extra": {"endpoint_url": emulator.url, "region_name": "us-east-1"},
                }
            ),
        )
        yield "aws_deeplens"


@pytest.fixture(scope="module")
def approved(split, emulator, module_conn):
    """A first run trains from the backbone (empty registry); its model is then registered and
    approved (as the registry task and an approver would) and is the current model."""
    store: dict = {}
    ctx = _context(split, "manual__2026-11-25T06:00:00+00:00", "train_model", store)
    op = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    first = store[("train_model", "warm_start")]
    assert first == {
        "warm_started": False,
        "reason": "no Approved model in the registry yet: training from the pretrained backbone",
    }
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    name = training_job_name(run_scope(ctx))
    job = _wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "validation"]
    group = group_name(run_scope(ctx).environment, DAG_ID)
    sm.create_model_package_group(ModelPackageGroupName=group)
    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    arn = sm.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [
                {"Image": job["AlgorithmSpecification"]["TrainingImage"], "ModelDataUrl": artifact}
            ],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        CustomerMetadataProperties={
            **encode_classes(split["classes"]),
            META_BASE_NETWORK: "resnet-50",
            META_IMAGE_SHAPE: "300",
        },
    )["ModelPackageArn"]
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    current = current_model(sm, group)
    assert current is not None and current.model_artifact == artifact
    return current


def test_same_classes_warm_start_from_the_current_version(split, approved, emulator):
    store: dict = {}
    ctx = _context(split, "manual__2026-11-25T07:00:00+00:00", "train_model", store)
    op = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    recorded = store[("train_model", "warm_start")]
    assert recorded["warm_started"] is True
    assert recorded["version"] == approved.version
    assert recorded["model_artifact"] == approved.model_artifact
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    name = training_job_name(run_scope(ctx))
    job = _wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    (model,) = [c for c in job["InputDataConfig"] if c["ChannelName"] == "model"]
    assert model["DataSource"]["S3DataSource"]["S3Uri"] == approved.model_artifact
    assert model["ContentType"] == "application/x-sagemaker-model"
    assert job["HyperParameters"]["use_pretrained_model"] == "0"
    # A retry re-attaches (its XComs were cleared) and records what the job was started with.
    store.clear()
    DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1").execute(ctx)
    assert store[("train_model", "warm_start")]["model_artifact"] == approved.model_artifact
    store[("train_model", "warm_start")] = recorded  # as the first attempt left it
    pick_ctx = dict(ctx, ti=FakeTaskInstance("pick_model", store))
    picked = PickModelOperator(task_id="pick_model").execute(pick_ctx)
    assert picked["warm_start"] == {
        "warm_started": True,
        "model_artifact": approved.model_artifact,
        "version": approved.version,
        "reason": recorded["reason"],
    }


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"classes": ["other", "classes"]}, "the classes changed"),
        ({"image_shape": 512}, "the image shape changed"),
        ({"warm_start": False}, "params.warm_start is off"),
    ],
)
def test_otherwise_the_request_has_no_model_channel_and_says_why(split, approved, emulator, params, why):
    store: dict = {}
    run_id = f"manual__2026-11-25T08:00:00+00:00-{sorted(params)[0]}"
    ctx = _context(split, run_id, "train_model", store, **params)
    op = DeepLensTrainingOperator(task_id="train_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    recorded = store[("train_model", "warm_start")]
    assert recorded["warm_started"] is False and why in recorded["reason"]
    assert [c["ChannelName"] for c in op.ran.config["InputDataConfig"]] == ["train", "validation"]
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    name = training_job_name(run_scope(ctx))
    sm.stop_training_job(TrainingJobName=name)  # not needed further; spare the CPU
    _wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")


def test_tuning_warm_starts_too_and_pick_model_reports_it(split, approved, emulator):
    store: dict = {}
    ctx = _context(split, "manual__2026-11-25T09:00:00+00:00", "tune_model", store, training_mode="tune")
    op = DeepLensTuningOperator(task_id="tune_model", split=split, region_name="us-east-1")
    with pytest.raises(TaskDeferred):
        op.execute(ctx)
    assert store[("tune_model", "warm_start")]["version"] == approved.version
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    name = tuning_job_name(run_scope(ctx))
    job = _wait(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
    )
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    picked = PickModelOperator(task_id="pick_model").execute(
        dict(ctx, ti=FakeTaskInstance("pick_model", store))
    )
    assert picked["warm_start"]["warm_started"] is True
    assert picked["warm_start"]["version"] == approved.version
    assert picked["warm_start"]["model_artifact"] == approved.model_artifact
