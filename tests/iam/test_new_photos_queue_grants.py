"""The MWAA execution role lets the new-photos watcher read its queue, and nothing more on SQS.

The watcher's trigger (the Amazon provider's ``SqsSensorTrigger`` with the DAG's arguments) runs
here against the emulator on the pipeline's connection, so its calls are recorded (the session's
``pipeline_calls``, which tests/iam/test_policies.py checks the policies against) and mapped to
the IAM actions AWS authorises them with.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import boto3
import pytest

from deeplens_pipeline.new_photos_asset import watcher_kwargs
from deeplens_pipeline.new_photos_setup import set_up
from emulator.aws_calls import allowed, iam_actions, record_calls

REGION = "us-east-1"
IAM_DIR = Path(__file__).resolve().parents[2] / "iam"
MWAA_POLICIES = ("mwaa-execution-role.json", "mwaa-execution-role-greengrass-v2.json")


def _policy(name: str) -> dict:
    return json.loads((IAM_DIR / name).read_text())


def _mwaa() -> dict:
    """The MWAA execution role's pipeline permissions (the core policy and the default deploy method's)."""
    return {"Version": "2012-10-17", "Statement": [s for n in MWAA_POLICIES for s in _policy(n)["Statement"]]}


def _watch_once(aws_conn: str, queue_url: str) -> tuple[list[dict], set[str]]:
    """One event of the watcher's trigger and the calls it made (the pipeline's key only)."""
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    # The DAG's arguments; two batches instead of ten keep the test short (the same calls).
    trigger = SqsSensorTrigger(**{**watcher_kwargs(queue_url, aws_conn), "num_batches": 2})

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    with record_calls(access_key="deeplens-pipeline") as recorder:
        payload = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    return payload["message_batch"], recorder.calls


@pytest.fixture
def photo_queue(emulator, aws_conn, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "setup")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "setup")
    session = boto3.session.Session(region_name=REGION)
    bucket = f"deeplens-grants-{uuid.uuid4().hex[:8]}"
    session.client("s3", endpoint_url=emulator.url).create_bucket(Bucket=bucket)
    queue_url = set_up(
        session, bucket=bucket, prefix="incoming/", queue_name=f"deeplens-{bucket}", endpoint_url=emulator.url
    )
    session.client("s3", endpoint_url=emulator.url).put_object(Bucket=bucket, Key="incoming/a.jpg", Body=b"x")
    return queue_url


def test_the_watchers_calls_are_granted_and_others_on_sqs_are_not(aws_conn, photo_queue, pipeline_calls):
    messages, calls = _watch_once(aws_conn, photo_queue)
    assert [json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in messages] == [
        "incoming/a.jpg"
    ]
    assert calls == {"sqs:ReceiveMessage", "sqs:DeleteMessageBatch"}
    pipeline_calls.calls.update(calls)  # tests/iam/test_policies.py: granted, and nothing granted unused

    role = _mwaa()
    assert iam_actions(calls) == {"sqs:ReceiveMessage", "sqs:DeleteMessage"}
    assert all(allowed(role, action) for action in iam_actions(calls))
    # What the role lacks is refused: sending, purging, the queue's settings, another queue's messages.
    for action in ("sqs:SendMessage", "sqs:PurgeQueue", "sqs:SetQueueAttributes", "sqs:DeleteQueue"):
        assert not allowed(role, action), action
    # The grant is the role's NewPhotosQueue statement, on the project's queues only.
    (statement,) = [
        s for s in _policy("mwaa-execution-role.json")["Statement"] if s.get("Sid") == "NewPhotosQueue"
    ]
    assert statement["Resource"] == "arn:aws:sqs:*:*:deeplens-*"
    without = {"Statement": [s for s in role["Statement"] if s.get("Sid") != "NewPhotosQueue"]}
    assert not any(allowed(without, action) for action in iam_actions(calls))


def test_the_watcher_leaves_other_messages_in_the_queue(emulator, aws_conn, photo_queue):
    """Its filter keeps messages that are not S3 object events (not deleted: no DeleteMessage for them)."""
    sqs = boto3.client("sqs", endpoint_url=emulator.url, region_name=REGION)
    sqs.send_message(QueueUrl=photo_queue, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    messages, _ = _watch_once(aws_conn, photo_queue)
    assert len(messages) == 1 and "Records" in json.loads(messages[0]["Body"])
    attributes = sqs.get_queue_attributes(
        QueueUrl=photo_queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert sum(int(v) for v in attributes.values()) == 1  # the test event is still there
