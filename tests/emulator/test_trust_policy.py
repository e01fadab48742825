"""The trust-policy evaluator and the Lambda runtime lifecycle table (no server)."""

import json
from datetime import date

import pytest

from emulator.extension.service_rules import RUNTIME_LIFECYCLE, runtime_refusal
from emulator.extension.trust_policy import evaluate_trust, split_role_arn

LAMBDA = "lambda.amazonaws.com"
SAGEMAKER = "sagemaker.amazonaws.com"


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal, action="sts:AssumeRole", **extra):
    return {"Effect": "Allow", "Principal": principal, "Action": action, **extra}


def deny(principal, action="sts:AssumeRole", **extra):
    return {"Effect": "Deny", "Principal": principal, "Action": action, **extra}


def test_a_service_principal_as_a_string_or_in_a_list():
    assert evaluate_trust(policy(allow({"Service": LAMBDA})), LAMBDA)
    assert evaluate_trust(policy(allow({"Service": [SAGEMAKER, LAMBDA]})), LAMBDA)
    assert not evaluate_trust(policy(allow({"Service": SAGEMAKER})), LAMBDA)
    assert not evaluate_trust(policy(allow({"Service": [SAGEMAKER]})), LAMBDA)


def test_actions_as_lists_and_wildcards_case_insensitively():
    for action in ("sts:AssumeRole", ["sts:TagSession", "sts:AssumeRole"], "sts:*", "*", "STS:assumerole"):
        assert evaluate_trust(policy(allow({"Service": LAMBDA}, action)), LAMBDA), action
    assert evaluate_trust(policy(allow({"Service": LAMBDA}, "sts:Assume?ole")), LAMBDA)
    for action in ("sts:TagSession", ["sts:AssumeRoleWithWebIdentity"], "iam:*", "sts:Assume"):
        assert not evaluate_trust(policy(allow({"Service": LAMBDA}, action)), LAMBDA), action


def test_a_deny_for_the_service_wins_over_any_allow():
    both = policy(allow({"Service": LAMBDA}), deny({"Service": [LAMBDA, SAGEMAKER]}, "sts:*"))
    verdict = evaluate_trust(both, LAMBDA)
    assert not verdict and "denies" in verdict.reason
    # A Deny for another service leaves the Allow standing.
    assert evaluate_trust(policy(allow({"Service": LAMBDA}), deny({"Service": SAGEMAKER})), LAMBDA)
    # A Deny of another action too.
    assert evaluate_trust(
        policy(allow({"Service": LAMBDA}), deny({"Service": LAMBDA}, "sts:TagSession")), LAMBDA
    )


def test_star_principals_not_principal_and_not_action():
    assert evaluate_trust(policy(allow("*")), LAMBDA)
    assert not evaluate_trust(policy(allow({"AWS": "*"})), LAMBDA)  # IAM identities, not services
    assert not evaluate_trust(policy(allow({"Service": LAMBDA}), deny("*")), LAMBDA)
    not_principal = {"Effect": "Deny", "NotPrincipal": {"Service": LAMBDA}, "Action": "sts:AssumeRole"}
    assert evaluate_trust(policy(allow("*"), not_principal), LAMBDA)
    assert not evaluate_trust(policy(allow("*"), not_principal), SAGEMAKER)
    not_action = {"Effect": "Allow", "Principal": {"Service": LAMBDA}, "NotAction": "iam:*"}
    assert evaluate_trust(policy(not_action), LAMBDA)


def test_conditions_are_not_judged_against_the_role():
    condition = {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert evaluate_trust(policy(allow({"Service": LAMBDA}, Condition=condition)), LAMBDA)
    assert evaluate_trust(
        policy(allow({"Service": LAMBDA}), deny({"Service": LAMBDA}, Condition=condition)), LAMBDA
    )


def test_documents_as_text_single_statements_and_broken_ones():
    text = json.dumps({"Version": "2012-10-17", "Statement": allow({"Service": LAMBDA})})
    assert evaluate_trust(text, LAMBDA)
    assert evaluate_trust(text.replace('"', "%22").replace(" ", "%20"), LAMBDA)  # URL-encoded
    assert not evaluate_trust('{"Version":"2012-10-17","Statement":[]}', LAMBDA)
    assert not evaluate_trust("{}", LAMBDA)
    assert not evaluate_trust("not json", LAMBDA)
    assert not evaluate_trust(policy({"Effect": "Allow", "Principal": {"Service": LAMBDA}}), LAMBDA)


def test_role_arns():
    assert split_role_arn("arn:aws:iam::123456789012:role/x") == ("aws", "123456789012")
    assert split_role_arn("arn:aws-cn:iam::123456789012:role/service-role/x") == ("aws-cn", "123456789012")
    assert split_role_arn("arn:aws:iam::123456789012:user/x") is None
    assert split_role_arn("x") is None


TODAY = date(2026, 11, 26)


@pytest.mark.parametrize(
    "runtime", ["python2.7", "python3.6", "python3.7", "nodejs12.x", "nodejs14.x", "go1.x"]
)
def test_runtimes_lambda_no_longer_creates(runtime):
    message = runtime_refusal(runtime, "create", TODAY)
    assert message.startswith(
        f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda "
        "functions. We recommend you use the new runtime ("
    )
    assert message.endswith(") while creating or updating functions.")


@pytest.mark.parametrize(
    "runtime", ["python3.8", "python3.9", "python3.10", "python3.12", "python3.13", "nodejs20.x"]
)
def test_runtimes_lambda_still_creates_today(runtime):
    assert runtime_refusal(runtime, "create", TODAY) is None


def test_block_dates_are_inclusive_and_update_comes_later():
    python37 = RUNTIME_LIFECYCLE["python3.7"]
    assert runtime_refusal("python3.7", "update", TODAY) is None  # blocked for updates from 2027-03-03
    assert runtime_refusal("python3.7", "update", python37.block_update) is not None
    assert runtime_refusal("python3.8", "create", date(2027, 1, 31)) is None
    assert runtime_refusal("python3.8", "create", date(2027, 2, 1)) == (
        "The runtime parameter of python3.8 is no longer supported for creating or updating AWS Lambda "
        "functions. We recommend you use the new runtime (python3.14) while creating or updating functions."
    )
    assert runtime_refusal("python3.6", "update", TODAY) is not None
    for name, lifecycle in RUNTIME_LIFECYCLE.items():
        assert lifecycle.block_create <= lifecycle.block_update, name
        if lifecycle.successor:
            assert lifecycle.successor in RUNTIME_LIFECYCLE, name


def test_unknown_or_absent_runtimes_are_left_to_lambda():
    assert runtime_refusal(None, "create", TODAY) is None
    assert runtime_refusal("python3.99", "create", TODAY) is None
    with pytest.raises(ValueError):
        runtime_refusal("python3.12", "invoke", TODAY)
