"""Which AWS actions a pipeline run needs: record its API calls, map them to IAM actions, check policies.

The shipped IAM policies (``iam/*.json``) are proven against what the pipeline really does: the
demo and the tests record every boto3 call the Airflow side makes (:func:`record_calls`), map each
API operation to the IAM actions AWS authorises for it (:data:`IAM_ACTIONS`, after AWS's Service
Authorization Reference: most operations are ``<prefix>:<Operation>``; S3 and a few others differ,
and some operations need other actions too, e.g. ``iam:PassRole`` for a role passed to a service),
and check that a policy grants each one and grants nothing else (:func:`granted_actions`).

Only the action is checked here, not the resource or a condition: the policies scope resources by
the ``deeplens-`` bucket and name prefixes (a test checks every ARN they name carries it), and the
emulator's own role checks evaluate resources for the SageMaker and device roles.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# IAM's service prefix where it is not botocore's signing name.
IAM_PREFIX = {"greengrassv2": "greengrass", "sagemaker": "sagemaker", "iot-data": "iot"}

# Operations whose IAM actions are not just "<prefix>:<Operation>" (Service Authorization Reference).
IAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:ListObjects": ("s3:ListBucket",),
    "s3:HeadBucket": ("s3:ListBucket",),
    "s3:HeadObject": ("s3:GetObject",),
    "s3:GetObject": ("s3:GetObject",),
    "s3:PutObject": ("s3:PutObject",),
    "s3:CreateMultipartUpload": ("s3:PutObject",),
    "s3:UploadPart": ("s3:PutObject",),
    "s3:CompleteMultipartUpload": ("s3:PutObject",),
    "s3:AbortMultipartUpload": ("s3:AbortMultipartUpload",),
    "s3:CopyObject": ("s3:GetObject", "s3:PutObject"),
    "s3:DeleteObject": ("s3:DeleteObject",),
    "s3:GetBucketCors": ("s3:GetBucketCORS",),
    "s3:PutBucketCors": ("s3:PutBucketCORS",),
    "s3:ListBuckets": ("s3:ListAllMyBuckets",),
    # SQS's batch operations are authorised by the single one's action (SQS Developer Guide, "Amazon
    # SQS batch actions": no permission can be set for DeleteMessageBatch itself).
    "sqs:DeleteMessageBatch": ("sqs:DeleteMessage",),
    # Passing a role to a service needs iam:PassRole on that role.
    "sagemaker:CreateTrainingJob": ("sagemaker:CreateTrainingJob", "sagemaker:AddTags", "iam:PassRole"),
    "sagemaker:CreateHyperParameterTuningJob": (
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:AddTags",
        "iam:PassRole",
    ),
    "sagemaker:CreateLabelingJob": ("sagemaker:CreateLabelingJob", "sagemaker:AddTags", "iam:PassRole"),
    "sagemaker:CreateModel": ("sagemaker:CreateModel", "iam:PassRole"),
    "lambda:CreateFunction": ("lambda:CreateFunction", "iam:PassRole"),
    "lambda:UpdateFunctionConfiguration": ("lambda:UpdateFunctionConfiguration", "iam:PassRole"),
    # Greengrass V2 deploys through AWS IoT jobs and shadows on the caller's behalf (the Greengrass V2
    # developer guide's "Authorize ... to create deployments" list).
    "greengrass:CreateDeployment": (
        "greengrass:CreateDeployment",
        "iot:CancelJob",
        "iot:CreateJob",
        "iot:DeleteThingShadow",
        "iot:DescribeJob",
        "iot:DescribeThing",
        "iot:DescribeThingGroup",
        "iot:GetThingShadow",
        "iot:UpdateJob",
        "iot:UpdateThingShadow",
    ),
}


def operation_key(service: str, operation: str) -> str:
    """``<iam prefix>:<Operation>`` of one API call (botocore's signing name and operation name)."""
    return f"{IAM_PREFIX.get(service, service)}:{operation}"


def iam_actions(calls: Iterable[str]) -> set[str]:
    """The IAM actions the calls ``<prefix>:<Operation>`` need."""
    actions: set[str] = set()
    for call in calls:
        actions.update(IAM_ACTIONS.get(call, (call,)))
    return actions


class CallRecorder:
    """Thread-safe set of the API calls made while recording."""

    def __init__(self) -> None:
        self.calls: set[str] = set()
        self._lock = threading.Lock()

    def add(self, service: str, operation: str) -> None:
        with self._lock:
            self.calls.add(operation_key(service, operation))


@contextmanager
def record_calls(access_key: str | None = None) -> Iterator[CallRecorder]:
    """Record every boto3/botocore API call this process makes (any thread) while the block runs,
    and the deferrable triggers' aiobotocore calls too.

    With ``access_key``, only calls signed with that key (the pipeline's connection, not a test's
    own clients or the emulator's) are recorded.
    """
    from botocore.client import BaseClient

    recorder = CallRecorder()

    def record(client: Any, operation_name: str) -> None:
        credentials = client._request_signer._credentials
        if access_key is None or (credentials is not None and credentials.access_key == access_key):
            recorder.add(client.meta.service_model.signing_name, operation_name)

    original = BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: Any) -> Any:
        record(self, operation_name)
        return original(self, operation_name, api_params)

    patches: list[tuple[Any, Any]] = [(BaseClient, original)]
    BaseClient._make_api_call = recording  # type: ignore[method-assign]
    try:
        from aiobotocore.client import AioBaseClient
    except ImportError:  # pragma: no cover - the Airflow environment has it
        AioBaseClient = None
    if AioBaseClient is not None:
        original_async = AioBaseClient._make_api_call

        async def recording_async(self: Any, operation_name: str, api_params: Any) -> Any:
            record(self, operation_name)
            return await original_async(self, operation_name, api_params)

        patches.append((AioBaseClient, original_async))
        AioBaseClient._make_api_call = recording_async
    try:
        yield recorder
    finally:
        for cls, method in patches:
            cls._make_api_call = method


def load_policy(path: Path) -> dict[str, Any]:
    """An IAM policy document from a JSON file."""
    return json.loads(path.read_text())


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str | dict) else list(value or [])


def allowed(policy: dict[str, Any], action: str) -> bool:
    """Whether ``policy`` allows ``action`` (Allow statements, IAM's ``*``/``?`` wildcards; a Deny wins)."""
    verdict = False
    for statement in _as_list(policy.get("Statement")):
        patterns = _as_list(statement.get("Action"))
        matches = any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)
        if matches and statement.get("Effect") == "Deny":
            return False
        verdict = verdict or (matches and statement.get("Effect") == "Allow")
    return verdict


def granted_actions(policy: dict[str, Any]) -> set[str]:
    """Every action an Allow statement names (wildcards kept as written)."""
    return {
        action
        for statement in _as_list(policy.get("Statement"))
        if statement.get("Effect") == "Allow"
        for action in _as_list(statement.get("Action"))
    }
