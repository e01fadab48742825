"""The shipped IAM policies: valid, trusted by the right service, and exactly what the pipeline uses.

``pipeline_calls`` (tests/conftest.py) records every AWS call the pipeline's connection makes in
this test session: the operator tests in-process, and the end-to-end DAG runs (both training
branches, the default Greengrass V2 deployment) through their result. The Greengrass V1 and SSH
paths are recorded by the deploy operator tests. So the proof needs the whole session: run alone,
the two checks at the end skip and say why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emulator.aws_calls import allowed, granted_actions, iam_actions
from emulator.extension.trust_policy import evaluate_trust

IAM_DIR = Path(__file__).resolve().parents[2] / "iam"
MWAA_POLICIES = (
    "mwaa-execution-role.json",
    "mwaa-execution-role-greengrass-v2.json",
    "mwaa-execution-role-greengrass-v1.json",
)
TRUST = {
    "sagemaker-execution-role-trust.json": "sagemaker.amazonaws.com",
    "lambda-execution-role-trust.json": "lambda.amazonaws.com",
    "device-token-exchange-role-trust.json": "credentials.iot.amazonaws.com",
}
# Calls only these paths make: present in the session when the whole suite ran.
WHOLE_RUN_MARKERS = {
    "sagemaker:CreateHyperParameterTuningJob",  # the tuning branch, end to end
    "greengrass:CreateComponentVersion",  # Greengrass V2
    "greengrass:CreateGroupVersion",  # Greengrass V1
    "lambda:UpdateFunctionCode",  # a changed inference function
}


def _policy(name: str) -> dict:
    return json.loads((IAM_DIR / name).read_text())


def _mwaa() -> dict:
    """The MWAA execution role's pipeline permissions: the core policy and one per deploy method."""
    return {"Version": "2012-10-17", "Statement": [s for n in MWAA_POLICIES for s in _policy(n)["Statement"]]}


def _recorded(pipeline_calls) -> set[str]:
    missing = WHOLE_RUN_MARKERS - pipeline_calls.calls
    if missing:
        reason = f"needs the whole test session (end-to-end and deploy tests); not seen: {sorted(missing)}"
        if os.environ.get("CI"):  # CI runs everything: a missing path is a failure, not a skip
            pytest.fail(reason)
        pytest.skip(reason)
    return set(pipeline_calls.calls)


@pytest.mark.parametrize("path", sorted(IAM_DIR.glob("*.json")), ids=lambda p: p.name)
def test_every_policy_file_is_a_policy_document(path: Path) -> None:
    document = json.loads(path.read_text())
    assert document["Version"] == "2012-10-17"
    assert document["Statement"] and all(s["Effect"] in ("Allow", "Deny") for s in document["Statement"])
    for statement in document["Statement"]:
        assert "Principal" in statement if path.name.endswith("-trust.json") else "Resource" in statement


@pytest.mark.parametrize(("name", "service"), sorted(TRUST.items()))
def test_each_role_trusts_its_service_and_no_other(name: str, service: str) -> None:
    document = _policy(name)
    assert evaluate_trust(document, service)
    for other in set(TRUST.values()) - {service}:
        assert not evaluate_trust(document, other)


def test_the_policies_are_scoped_to_the_projects_names() -> None:
    """No wildcard action, and S3, Lambda and SageMaker resources only under the deeplens prefixes."""
    for name in (*MWAA_POLICIES, "sagemaker-execution-role.json", "device-token-exchange-role.json"):
        for statement in _policy(name)["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), (name, actions)
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            for resource in resources:
                if resource.startswith(
                    ("arn:aws:s3:::", "arn:aws:lambda:", "arn:aws:sagemaker:", "arn:aws:iam:")
                ):
                    assert "deeplens" in resource, (name, resource)


def test_every_action_the_pipeline_performed_is_granted(pipeline_calls) -> None:
    policy = _mwaa()
    refused = sorted(a for a in iam_actions(_recorded(pipeline_calls)) if not allowed(policy, a))
    assert not refused, f"the pipeline called these, the MWAA policies do not grant them: {refused}"


def test_nothing_granted_is_unused(pipeline_calls) -> None:
    needed = iam_actions(_recorded(pipeline_calls))
    unused = sorted(granted_actions(_mwaa()) - needed)
    assert not unused, f"granted, never needed by the pipeline: {unused}"


def test_the_policy_check_can_fail() -> None:
    """The checks above are only as good as ``allowed``: it refuses what a policy does not grant."""
    policy = _mwaa()
    assert allowed(policy, "sagemaker:CreateTrainingJob")
    assert not allowed(policy, "sagemaker:DeleteModel")
    assert not allowed(policy, "s3:DeleteBucket")
    deny = {"Statement": [*policy["Statement"], {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}
    assert not allowed(deny, "s3:GetObject")
