"""Set up S3 -> SQS notifications of new photos, idempotently (run by a person, not by MWAA).

``python -m deeplens_pipeline.new_photos_setup --bucket B --prefix P --queue-name Q [--region R]
[--endpoint-url U]`` creates the queue (or finds it), sets its policy so that S3 may send it the
bucket's events (``aws:SourceArn`` the bucket, ``aws:SourceAccount`` the account), adds an
``s3:ObjectCreated:*`` notification for the prefix to the bucket while keeping the bucket's other
notifications (get, merge, put: a rerun changes nothing), and deletes the ``s3:TestEvent`` S3
sends the queue when the configuration is saved. Prints the queue URL and the variable to set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from deeplens_pipeline.new_photos import QUEUE_URL_ENV, is_photo_event

NOTIFICATION_ID = "deeplens-new-photos"
QUEUE_NAME = re.compile(r"deeplens-[A-Za-z0-9_-]{1,71}")
"""SQS's rule for a standard queue's name (at most 80 letters, digits, hyphens, underscores), with the
``deeplens-`` prefix the MWAA role's SQS grant names (iam/mwaa-execution-role.json)."""
EVENTS = ["s3:ObjectCreated:*"]
POLICY_SID = "S3SendsNewPhotoEvents"


def queue_policy(queue_arn: str, bucket: str, account_id: str) -> dict[str, Any]:
    """The queue policy that lets S3 send the bucket's events (and nothing else) to the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": POLICY_SID,
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            }
        ],
    }


def merge_policy(current: str | None, wanted: dict[str, Any]) -> dict[str, Any]:
    """``current`` (JSON text or None) with our statement added or replaced; others kept."""
    policy = json.loads(current) if current else {"Version": "2012-10-17", "Statement": []}
    ours = wanted["Statement"][0]
    statements = [s for s in policy.get("Statement", []) if s.get("Sid") != ours["Sid"]]
    return {**policy, "Statement": [*statements, ours]}


def merge_notification(current: dict[str, Any], queue_arn: str, prefix: str) -> dict[str, Any]:
    """The bucket's notification configuration with ours (by Id) added or replaced; others kept."""
    config = {k: v for k, v in current.items() if k != "ResponseMetadata"}
    ours = {
        "Id": NOTIFICATION_ID,
        "QueueArn": queue_arn,
        "Events": list(EVENTS),
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
    }
    queues = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != NOTIFICATION_ID]
    config["QueueConfigurations"] = [*queues, ours]
    return config


def drain_test_events(sqs: Any, queue_url: str) -> int:
    """Delete the ``s3:TestEvent`` messages waiting in the queue (photo events stay); how many."""
    deleted = 0
    for _ in range(5):
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=5
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            if is_photo_event(message["Body"]):  # not ours to consume: back in the queue at once
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            elif json.loads(message["Body"]).get("Event") == "s3:TestEvent":
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                deleted += 1
    return deleted


def set_up(
    session: Any, *, bucket: str, prefix: str, queue_name: str, endpoint_url: str | None = None
) -> str:
    """Create or update the queue, its policy and the bucket's notification; return the queue URL."""
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)
    sts = session.client("sts", endpoint_url=endpoint_url)
    account_id = sts.get_caller_identity()["Account"]
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]  # returns the queue if it exists
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "Policy"])[
        "Attributes"
    ]
    queue_arn = attributes["QueueArn"]
    policy = merge_policy(attributes.get("Policy"), queue_policy(queue_arn, bucket, account_id))
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    current = s3.get_bucket_notification_configuration(Bucket=bucket, ExpectedBucketOwner=account_id)
    config = merge_notification(current, queue_arn, prefix)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=config, ExpectedBucketOwner=account_id
    )
    drain_test_events(sqs, queue_url)
    return queue_url


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="the bucket the photos are uploaded to")
    parser.add_argument("--prefix", required=True, help="the key prefix of the photos (image_source's)")
    parser.add_argument("--queue-name", required=True, help="the SQS queue (created if missing)")
    parser.add_argument("--region", help="AWS region (default: the profile's)")
    parser.add_argument("--endpoint-url", help="another endpoint (the emulator)")
    args = parser.parse_args(argv)
    if not QUEUE_NAME.fullmatch(args.queue_name):
        parser.error(
            f"--queue-name {args.queue_name!r}: must begin with 'deeplens-' (the MWAA execution role may "
            "read only those queues) and be at most 80 letters, digits, hyphens or underscores"
        )
    session = boto3.session.Session(region_name=args.region)
    url = set_up(
        session,
        bucket=args.bucket,
        prefix=args.prefix,
        queue_name=args.queue_name,
        endpoint_url=args.endpoint_url,
    )
    print(f"queue: {url}")
    print(f"Set {QUEUE_URL_ENV}={url} in the Airflow environment (MWAA: an environment variable via the")
    print("startup script); iam/mwaa-execution-role.json grants the execution role what the watcher needs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
