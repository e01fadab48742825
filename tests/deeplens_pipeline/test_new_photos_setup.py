"""The new-photos setup command: idempotent, and keeps the bucket's other notifications."""

import json
import uuid

import boto3
import pytest

from deeplens_pipeline import new_photos_setup
from deeplens_pipeline.new_photos import decide, is_photo_event
from deeplens_pipeline.new_photos_setup import NOTIFICATION_ID, set_up

REGION = "us-east-1"


@pytest.fixture
def session(emulator):
    return boto3.session.Session(
        region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_setup_creates_the_queue_policy_and_notification_keeping_others_and_reruns_unchanged(
    emulator, session
):
    s3 = session.client("s3", endpoint_url=emulator.url)
    sqs = session.client("sqs", endpoint_url=emulator.url)
    bucket = f"deeplens-setup-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    other_url = sqs.create_queue(QueueName=f"{bucket}-other")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sqs.set_queue_attributes(
        QueueUrl=other_url,
        Attributes={"Policy": json.dumps(new_photos_setup.queue_policy(other_arn, bucket, "123456789012"))},
    )
    existing = {
        "Id": "someone-elses",
        "QueueArn": other_arn,
        "Events": ["s3:ObjectRemoved:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}},
    }
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [existing]}
    )

    url = set_up(
        session, bucket=bucket, prefix="photos/", queue_name=f"{bucket}-new", endpoint_url=emulator.url
    )
    first = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    assert sorted(c["Id"] for c in first) == sorted(["someone-elses", NOTIFICATION_ID])
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:s3:::{bucket}"
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    # The s3:TestEvent S3 sent on saving is gone: the queue holds nothing that could start a run.
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []

    assert (
        set_up(
            session, bucket=bucket, prefix="photos/", queue_name=f"{bucket}-new", endpoint_url=emulator.url
        )
        == url
    )
    again = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    assert sorted(json.dumps(c, sort_keys=True) for c in again) == sorted(
        json.dumps(c, sort_keys=True) for c in first
    )
    policy_again = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert policy_again == policy

    s3.put_object(Bucket=bucket, Key="photos/a.jpg", Body=b"jpeg")
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert is_photo_event(message["Body"])


def test_the_command_line_prints_the_queue_url_and_the_variable(emulator, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"deeplens-cli-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=emulator.url, region_name=REGION).create_bucket(Bucket=bucket)
    argv = ["--bucket", bucket, "--prefix", "p/", "--queue-name", bucket, "--region", REGION]
    assert new_photos_setup.main([*argv, "--endpoint-url", emulator.url]) == 0
    out = capsys.readouterr().out
    assert f"/{bucket}" in out and "DEEPLENS_NEW_PHOTOS_QUEUE_URL=" in out


@pytest.mark.parametrize("name", ["photos-queue", "deeplens-", "deeplens-a.fifo", "deeplens-" + "x" * 72])
def test_the_command_line_refuses_a_queue_the_mwaa_role_cannot_read(name, capsys):
    with pytest.raises(SystemExit) as err:
        new_photos_setup.main(["--bucket", "deeplens-b", "--prefix", "p/", "--queue-name", name])
    assert err.value.code == 2
    assert f"--queue-name {name!r}: must begin with 'deeplens-'" in capsys.readouterr().err


def test_the_gate_stops_only_runs_not_started_by_hand_with_too_few_photos():
    assert decide(3, 5, "asset_triggered").go_on is False
    assert decide(5, 5, "asset_triggered").go_on is True
    assert decide(0, 1, "scheduled").go_on is False
    assert decide(0, 1, "manual").go_on is True
    assert decide(0, 1, "DagRunType.ASSET_TRIGGERED").go_on is False
    assert "fewer than min_new_photos=5" in decide(3, 5, "asset_triggered").reason
    with pytest.raises(ValueError):
        decide(-1, 1, "manual")


def test_only_s3_object_events_count_as_photos():
    assert not is_photo_event(json.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"}))
    assert not is_photo_event("not json")
    assert not is_photo_event(json.dumps({"Records": []}))
    assert is_photo_event(
        json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "a"}}}]})
    )
