"""Every trigger that follows an operator's own status check waits one interval before polling.

An immediate first poll of a job that is already done resumes the task at once, which races
Airflow 3.3.1's scheduler (apache/airflow#72716). Each trigger's first act must be that sleep.
"""

import asyncio

import pytest
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.triggers.base import TriggerEvent

from deeplens_pipeline.triggers import greengrass
from deeplens_pipeline.triggers.greengrass import DeviceDeploymentTrigger
from deeplens_pipeline.triggers.groundtruth import LabelingJobTrigger
from deeplens_pipeline.triggers.sagemaker import _PROVIDER_TAKES_REGION, SageMakerJobTrigger


@pytest.fixture
def timeline(monkeypatch):
    """What the triggers do, in order: sleeps (with their seconds) and polls."""
    events: list[tuple[str, float | None]] = []

    async def sleep(seconds):
        events.append(("sleep", seconds))

    async def poll(self):
        events.append(("poll", None))
        yield TriggerEvent({"status": "success"})

    monkeypatch.setattr(asyncio, "sleep", sleep)
    monkeypatch.setattr(AwsBaseWaiterTrigger, "run", poll)
    monkeypatch.setattr(SageMakerTrigger, "run", poll)  # its own run before Amazon provider 9.13
    return events


async def _first_event(trigger):
    async for event in trigger.run():
        return event


@pytest.mark.parametrize(
    "trigger",
    [
        LabelingJobTrigger(job_name="deeplens-label-x", waiter_delay=60, waiter_max_attempts=10),
        SageMakerJobTrigger(job_name="deeplens-train-x", job_type="Training", waiter_delay=60),
        SageMakerJobTrigger(job_name="deeplens-tune-x", job_type="tuning", waiter_delay=60),
    ],
    ids=["labelling", "training", "tuning"],
)
def test_job_triggers_wait_one_interval_before_the_first_poll(timeline, trigger):
    asyncio.run(_first_event(trigger))
    assert timeline[:2] == [("sleep", 60), ("poll", None)]


def test_the_deployment_trigger_waits_one_interval_before_the_first_poll(timeline, monkeypatch):
    async def wait(get_status, **kwargs):
        timeline.append(("poll", None))
        raise RuntimeError("stop here")

    monkeypatch.setattr(greengrass, "wait_for_final_status", wait)
    monkeypatch.setattr(DeviceDeploymentTrigger, "_deployer", lambda self: None)
    trigger = DeviceDeploymentTrigger(
        handle={"method": "greengrass-v2", "deployment_id": "d", "target": "deeplens_x"}, poll_interval=30
    )
    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "error"
    assert timeline[:2] == [("sleep", 30), ("poll", None)]


def test_the_providers_trigger_is_swapped_for_ours_in_the_runs_region():
    if _PROVIDER_TAKES_REGION:
        provider = SageMakerTrigger(job_name="j", job_type="Training", waiter_delay=5, aws_conn_id="c")
    else:  # Amazon provider 9.12 and older
        provider = SageMakerTrigger(job_name="j", job_type="Training", poke_interval=5, aws_conn_id="c")
    ours = SageMakerJobTrigger.from_provider(provider, "eu-west-1")
    path, fields = ours.serialize()
    assert path == "deeplens_pipeline.triggers.sagemaker.SageMakerJobTrigger"
    assert fields["job_name"] == "j" and fields["job_type"] == "Training"
    assert fields["waiter_delay"] == 5 and fields["aws_conn_id"] == "c"
    assert fields["region_name"] == "eu-west-1"
    if _PROVIDER_TAKES_REGION:
        assert fields == {**provider.serialize()[1], "region_name": "eu-west-1"}
    again = SageMakerJobTrigger(**fields)  # what the triggerer does with it
    assert again.serialize() == (path, fields)
