"""The approval trigger: serialisable for the triggerer, and an AWS error is polled through, not fatal."""

from __future__ import annotations

import asyncio
import time

import pytest

from deeplens_pipeline.triggers.registry import ModelApprovalTrigger

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/deeplens-models-000000000000/1"


def test_it_round_trips_through_serialisation() -> None:
    trigger = ModelApprovalTrigger(
        ARN, poll_seconds=7, aws_conn_id="aws_deeplens", region_name="eu-west-1", deadline=1_800_000_000
    )
    path, kwargs = trigger.serialize()
    assert path == "deeplens_pipeline.triggers.registry.ModelApprovalTrigger"
    assert kwargs == {
        "model_package_arn": ARN,
        "poll_seconds": 7,
        "aws_conn_id": "aws_deeplens",
        "region_name": "eu-west-1",
        "deadline": 1_800_000_000.0,
    }
    assert ModelApprovalTrigger(**kwargs).serialize() == (path, kwargs)


def test_a_version_it_cannot_read_is_polled_again_not_fired(aws_conn, capsys) -> None:
    """A missing version (an AWS error) is logged at each poll; the trigger keeps waiting."""
    trigger = ModelApprovalTrigger(ARN, poll_seconds=1, aws_conn_id=aws_conn, region_name="us-east-1")

    async def first_event() -> None:
        async for event in trigger.run():
            raise AssertionError(f"fired {event}")

    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(first_event(), timeout=8))
    out = capsys.readouterr().out
    assert out.count("polling again") >= 2 and "DescribeModelPackage" in out


def test_past_its_deadline_an_aws_error_ends_the_wait_instead_of_polling_on(aws_conn, capsys) -> None:
    """At the deadline the trigger fires ``timeout`` even when it cannot read the version (the task
    reads it again): it never spins on a failing call."""
    trigger = ModelApprovalTrigger(
        ARN, poll_seconds=600, aws_conn_id=aws_conn, region_name="us-east-1", deadline=time.time() - 1
    )

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=20))
    assert payload["status"] == "timeout" and payload["arn"] == ARN
    out = capsys.readouterr().out
    assert out.count("at the deadline") == 1 and "polling again" not in out
