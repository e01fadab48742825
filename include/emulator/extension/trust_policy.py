"""Can an AWS service assume this IAM role? The trust-policy evaluation the emulator's checks use.

A service assumes a role with ``sts:AssumeRole`` as the service principal (``lambda.amazonaws.com``,
``sagemaker.amazonaws.com``, ...). It may if some statement of the role's trust policy
(AssumeRolePolicyDocument) allows that action for that principal and no statement denies it: an
explicit Deny wins over any Allow, and no Allow means no (IAM's policy evaluation logic).

What is evaluated: ``Effect``; ``Action`` or ``NotAction`` as a string or a list, with IAM's ``*``
and ``?`` wildcards, case-insensitively (``sts:*``, ``sts:AssumeRole*``, ``*``); ``Principal`` or
``NotPrincipal`` as ``"*"`` or a map whose ``Service`` is a string or a list (a ``{"AWS": "*"}``
principal names IAM identities, not services). ``Condition`` is not evaluated (the request context a
service supplies, such as ``aws:SourceAccount``, is not known here): a conditional Allow counts as an
Allow and a conditional Deny is ignored, so the emulator never refuses a role on a condition it cannot
judge.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

ASSUME_ROLE = "sts:AssumeRole"
_ROLE_ARN = re.compile(r"^arn:(aws[a-zA-Z-]*):iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?[\w+=,.@-]+$")


@dataclass(frozen=True)
class TrustVerdict:
    """Whether ``service`` may assume the role, and why (for logs and test messages)."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def parse_policy(document: str | dict[str, Any]) -> dict[str, Any]:
    """A policy document as a dict; IAM hands it out URL-encoded, moto keeps what it was given."""
    if isinstance(document, dict):
        return document
    try:
        return json.loads(document)
    except ValueError:
        return json.loads(unquote(document))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _wildcard(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE)


def _action_matches(patterns: Any, action: str) -> bool:
    return any(_wildcard(str(p)).fullmatch(action) for p in _as_list(patterns))


def _principal_matches(principal: Any, service: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    return any(str(s).lower() == service.lower() for s in _as_list(principal.get("Service")))


def _applies(statement: dict[str, Any], service: str, action: str) -> bool:
    if "Action" in statement:
        action_ok = _action_matches(statement["Action"], action)
    elif "NotAction" in statement:
        action_ok = not _action_matches(statement["NotAction"], action)
    else:
        action_ok = False
    if "Principal" in statement:
        principal_ok = _principal_matches(statement["Principal"], service)
    elif "NotPrincipal" in statement:
        principal_ok = not _principal_matches(statement["NotPrincipal"], service)
    else:
        principal_ok = False
    return action_ok and principal_ok


def evaluate_trust(document: str | dict[str, Any], service: str, action: str = ASSUME_ROLE) -> TrustVerdict:
    """May principal ``service`` perform ``action`` on a role with this trust policy?"""
    try:
        policy = parse_policy(document)
    except ValueError:
        return TrustVerdict(False, "the trust policy is not valid JSON")
    statements = [s for s in _as_list(policy.get("Statement")) if isinstance(s, dict)]
    allowed_by: list[int] = []
    for index, statement in enumerate(statements):
        if not _applies(statement, service, action):
            continue
        effect = statement.get("Effect")
        if effect == "Deny" and "Condition" not in statement:
            return TrustVerdict(False, f"statement {index} denies {action} to {service}")
        if effect == "Allow":
            allowed_by.append(index)
    if allowed_by:
        return TrustVerdict(True, f"statement {allowed_by[0]} allows {action} to {service}")
    return TrustVerdict(False, f"no statement allows {action} to {service}")


def split_role_arn(role_arn: str) -> tuple[str, str] | None:
    """``(partition, account)`` of an IAM role ARN, or None when it is not one."""
    match = _ROLE_ARN.match(role_arn or "")
    return (match.group(1), match.group(2)) if match else None


def role_trust(role_arn: str, service: str) -> TrustVerdict:
    """Read the role from this process's moto IAM and evaluate its trust policy for ``service``."""
    from moto.iam.models import iam_backends

    parts = split_role_arn(role_arn)
    if parts is None:
        return TrustVerdict(False, f"{role_arn!r} is not an IAM role ARN")
    partition, account = parts
    backend = iam_backends[account][partition]
    role = next((r for r in backend.roles.values() if r.arn == role_arn), None)
    if role is None:
        return TrustVerdict(False, f"role {role_arn} does not exist")
    return evaluate_trust(role.assume_role_policy_document or "{}", service)
