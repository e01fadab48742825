"""Recording the pipeline's AWS calls and mapping them to IAM actions (the policies' proof)."""

import boto3

from emulator.aws_calls import iam_actions, operation_key, record_calls


def test_only_calls_signed_with_the_given_key_are_recorded(emulator):
    def client(key):
        return boto3.client(
            "s3",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key="x",
        )

    with record_calls(access_key="pipeline-key") as recorder:
        client("pipeline-key").list_buckets()
        client("someone-else").create_bucket(Bucket="deeplens-aws-calls")
    assert recorder.calls == {"s3:ListBuckets"}
    with record_calls() as everything:
        client("someone-else").head_bucket(Bucket="deeplens-aws-calls")
    assert everything.calls == {"s3:HeadBucket"}


def test_operations_map_to_the_actions_iam_authorises():
    assert operation_key("greengrassv2", "CreateDeployment") == "greengrass:CreateDeployment"
    assert iam_actions(["s3:ListObjectsV2", "s3:CopyObject"]) == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
    }
    assert "iam:PassRole" in iam_actions(["lambda:CreateFunction"])
    assert iam_actions(["sagemaker:DescribeTrainingJob"]) == {"sagemaker:DescribeTrainingJob"}


def test_the_triggers_async_calls_are_recorded_too(emulator):
    import asyncio

    from aiobotocore.session import get_session

    async def call():
        async with get_session().create_client(
            "s3",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id="pipeline-key",
            aws_secret_access_key="x",
        ) as client:
            await client.list_buckets()

    with record_calls(access_key="pipeline-key") as recorder:
        asyncio.run(call())
    assert recorder.calls == {"s3:ListBuckets"}
