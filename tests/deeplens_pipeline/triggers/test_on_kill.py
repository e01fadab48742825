"""A user who kills a deferred task stops its paid job: the triggers' on_kill, on the emulator."""

import asyncio

import boto3
import pytest

from deeplens_pipeline.params import validate_params
from deeplens_pipeline.training import training_job_config
from deeplens_pipeline.triggers.groundtruth import LabelingJobTrigger
from deeplens_pipeline.triggers.sagemaker import STOP_ACTIONS, SageMakerJobTrigger
from emulator.sample_dataset import generate_sample_dataset
from emulator.seed import ensure_role
from tests.conftest import stage_sample_split
from tests.emulator.helpers import wait_for_job

BUCKET = "deeplens-on-kill"


@pytest.fixture
def slow_training(emulator):
    """Training jobs that run long enough to be stopped mid-way."""
    before = emulator.settings.training_max_seconds
    emulator.settings.training_max_seconds = 120
    yield
    emulator.settings.training_max_seconds = before


@pytest.fixture
def staged(emulator, tmp_path):
    """A staged train/validation split and the job request's channel arguments, with the role."""
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name="us-east-1")
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")
    root = generate_sample_dataset(tmp_path / "ds", n_images=4)
    split = stage_sample_split(emulator.url, BUCKET, root, n_train=3)
    params = {"bucket": BUCKET, "classes": split["classes"], "image_shape": 300, "epochs": 2}
    return {
        "params": validate_params({**params, "lr_scheduler_step": "1"}),
        "train_uri": f"s3://{BUCKET}/m/train.manifest",
        "validation_uri": f"s3://{BUCKET}/m/validation.manifest",
        "output_uri": f"s3://{BUCKET}/output/",
        "num_training_samples": 3,
    }


def test_killing_a_deferred_training_task_stops_its_job(emulator, aws_conn, staged, slow_training):
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    name = "deeplens-train-on-kill"
    sm.create_training_job(
        **training_job_config(
            job_name=name,
            **staged,
        )
    )
    trigger = SageMakerJobTrigger(
        job_name=name, job_type="Training", waiter_delay=1, aws_conn_id=aws_conn, region_name="us-east-1"
    )
    asyncio.run(trigger.on_kill())
    assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] in ("Stopping", "Stopped")
    stopped = wait_for_job(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")
    assert stopped["TrainingJobStatus"] == "Stopped"
    asyncio.run(trigger.on_kill())  # a job already stopped: said in the log, never raised


def test_killing_a_deferred_tuning_task_stops_the_tuning_job_and_its_training_job(
    emulator, aws_conn, staged, slow_training
):
    from deeplens_pipeline.training import tuning_job_config

    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    name = "deeplens-tune-on-kill"
    sm.create_hyper_parameter_tuning_job(
        **tuning_job_config(
            job_name=name,
            **staged,
        )
    )
    trigger = SageMakerJobTrigger(
        job_name=name, job_type="tuning", waiter_delay=1, aws_conn_id=aws_conn, region_name="us-east-1"
    )
    asyncio.run(trigger.on_kill())
    job = wait_for_job(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
    )
    assert job["HyperParameterTuningJobStatus"] == "Stopped"
    children = sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    assert all(c["TrainingJobStatus"] == "Stopped" for c in children)


def test_every_job_type_the_pipeline_defers_on_has_a_stop_action():
    for job_type in ("Training", "Tuning", "Transform"):
        action, argument = STOP_ACTIONS[job_type.lower()]
        assert action.startswith("stop_") and argument.endswith("JobName")


def test_killing_a_deferred_labelling_task_stops_its_job(emulator, aws_conn):
    from emulator.seed import seed_demo_account

    account = seed_demo_account(emulator.url, bucket=BUCKET)
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key="in.manifest", Body=b'{"source-ref": "s3://deeplens-on-kill/x.jpg"}\n')
    from deeplens_pipeline import groundtruth as gt

    s3.put_object(Bucket=BUCKET, Key="labels.json", Body=gt.label_category_config(["box"]).encode())
    s3.put_object(Bucket=BUCKET, Key="t.html", Body=gt.BOUNDING_BOX_TEMPLATE.encode())
    name = "deeplens-label-on-kill"
    sm.create_labeling_job(
        **gt.create_labeling_job_request(
            job_name=name,
            label_attribute="bb",
            input_manifest_uri=f"s3://{BUCKET}/in.manifest",
            output_uri=f"s3://{BUCKET}/output/",
            role_arn=account.role_arn,
            workteam_arn=account.workteam_arn,
            label_config_uri=f"s3://{BUCKET}/labels.json",
            ui_template_uri=f"s3://{BUCKET}/t.html",
            region="us-east-1",
            task_title="t",
            task_description="d",
        )
    )
    trigger = LabelingJobTrigger(job_name=name, waiter_delay=1, aws_conn_id=aws_conn, region_name="us-east-1")
    asyncio.run(trigger.on_kill())
    assert sm.describe_labeling_job(LabelingJobName=name)["LabelingJobStatus"] in ("Stopping", "Stopped")
