"""S3 tells an SQS queue about new objects in the emulator, and refuses what S3 refuses."""

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from deeplens_pipeline.new_photos import is_photo_event
from deeplens_pipeline.new_photos_setup import queue_policy

REGION = "us-east-1"


def _clients(url):
    return (
        boto3.client("s3", endpoint_url=url, region_name=REGION),
        boto3.client("sqs", endpoint_url=url, region_name=REGION),
    )


def _bucket_and_queue(url, *, policy=True):
    s3, sqs = _clients(url)
    name = f"deeplens-notify-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if policy:
        sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(queue_policy(arn, name, "123456789012"))}
        )
    return s3, sqs, name, queue_url, arn


def _queue_config(arn, prefix="", suffix="", events=("s3:ObjectCreated:*",), id_="c"):
    rules = [
        {"Name": name, "Value": value} for name, value in (("prefix", prefix), ("suffix", suffix)) if value
    ]
    return {"Id": id_, "QueueArn": arn, "Events": list(events), "Filter": {"Key": {"FilterRules": rules}}}


def _receive(sqs, queue_url):
    return sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    )


def test_an_uploaded_photo_reaches_the_queue_as_an_s3_event(emulator):
    s3, sqs, bucket, queue_url, arn = _bucket_and_queue(emulator.url)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [_queue_config(arn, "photos/")]}
    )
    test_events = [json.loads(m["Body"]) for m in _receive(sqs, queue_url)]
    assert [e["Event"] for e in test_events] == ["s3:TestEvent"]  # sent when the configuration is saved
    assert not is_photo_event(json.dumps(test_events[0]))

    s3.put_object(Bucket=bucket, Key="photos/cat 1.jpg", Body=b"jpeg")
    s3.put_object(Bucket=bucket, Key="elsewhere/dog.jpg", Body=b"jpeg")  # outside the prefix: no event
    messages = _receive(sqs, queue_url)
    assert len(messages) == 1 and is_photo_event(messages[0]["Body"])
    record = json.loads(messages[0]["Body"])["Records"][0]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["object"]["key"] == "photos/cat+1.jpg"  # URL-encoded, as S3 sends it
    assert record["s3"]["configurationId"] == "c"


@pytest.mark.parametrize(
    ("first", "second", "refused"),
    [
        (("photos/", ""), ("photos/cats/", ""), True),  # nested prefixes, same events
        (("", ".jpg"), ("photos/", ".jpg"), True),  # prefixes overlap, same suffix
        (("photos/", ".jpg"), ("photos/", ".png"), False),  # same prefix, disjoint suffixes
        (("photos/", ""), ("videos/", ""), False),  # disjoint prefixes
    ],
)
def test_overlapping_filters_for_the_same_events_are_refused(emulator, first, second, refused):
    s3, _, bucket, _, arn = _bucket_and_queue(emulator.url)
    config = {
        "QueueConfigurations": [_queue_config(arn, *first, id_="a"), _queue_config(arn, *second, id_="b")]
    }
    if refused:
        with pytest.raises(ClientError) as err:
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        assert err.value.response["Error"]["Code"] == "InvalidArgument"
        assert "overlapping" in err.value.response["Error"]["Message"]
    else:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        got = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
        assert sorted(c["Id"] for c in got) == ["a", "b"]


def test_overlapping_prefixes_for_different_events_are_accepted(emulator):
    s3, _, bucket, _, arn = _bucket_and_queue(emulator.url)
    config = {
        "QueueConfigurations": [
            _queue_config(arn, "photos/", events=["s3:ObjectCreated:*"], id_="a"),
            _queue_config(arn, "photos/", events=["s3:ObjectRemoved:*"], id_="b"),
        ]
    }
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def test_a_queue_that_does_not_let_s3_send_is_refused(emulator):
    s3, _, bucket, _, arn = _bucket_and_queue(emulator.url, policy=False)
    with pytest.raises(ClientError) as err:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [_queue_config(arn, "photos/")]}
        )
    assert err.value.response["Error"]["Code"] == "InvalidArgument"
    assert (
        "Unable to validate the following destination configurations"
        in err.value.response["Error"]["Message"]
    )


def test_the_queue_refuses_receive_settings_sqs_refuses_and_takes_the_watchers(emulator):
    """SQS: at most 10 messages a call, a long poll of at most 20 s (moto checks both, as SQS does)."""
    from deeplens_pipeline.new_photos_asset import watcher_kwargs

    _, sqs, _, queue_url, _ = _bucket_and_queue(emulator.url)
    for bad in ({"MaxNumberOfMessages": 11}, {"MaxNumberOfMessages": 0}, {"WaitTimeSeconds": 21}):
        with pytest.raises(ClientError) as err:
            sqs.receive_message(QueueUrl=queue_url, **bad)
        assert err.value.response["Error"]["Code"] in (
            "InvalidParameterValue",
            "InvalidParameterValueException",
        )
    ours = watcher_kwargs(queue_url, "aws_deeplens")
    sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=ours["max_messages"],
        WaitTimeSeconds=ours["wait_time_seconds"],
    )
