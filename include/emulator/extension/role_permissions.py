"""What an IAM role may do: the permission-policy evaluation the emulator's services share.

A service acting as a role (a SageMaker job as its execution role, a Greengrass core as its token
exchange role) may perform an action on a resource if some statement of the role's permission
policies (its inline policies and the default version of each attached managed policy) allows it and
none denies it: an explicit Deny wins over any Allow, and no Allow means no (IAM's policy evaluation
logic for a request within one account, without resource policies, permission boundaries or SCPs).

The role is read from this process's moto IAM backend, ``iam_backends[account][partition]`` of the
role ARN. Each statement is evaluated with moto's ``IAMPolicy`` (``Action``/``NotAction`` and
``Resource`` with ``*`` wildcards), after :func:`evaluable` has made it evaluate faithfully.

:class:`RolePermissions` parses a role's policies once and remembers every verdict, so a job that
checks one object after another pays for one IAM lookup and one evaluation per distinct key.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult

from emulator.extension.trust_policy import parse_policy, split_role_arn


def find_role(role_arn: str) -> Any | None:
    """The moto IAM role with this ARN, or None (no such role, or not a role ARN)."""
    from moto.iam.models import iam_backends

    parts = split_role_arn(role_arn or "")
    if parts is None:
        return None
    partition, account = parts
    backend = iam_backends[account][partition]
    return next((r for r in list(backend.roles.values()) if r.arn == role_arn), None)


def default_document(policy: Any) -> str:
    """The document of a managed policy's default version."""
    return next(v.document for v in policy.versions if v.is_default)


def role_documents(role: Any) -> list[str | dict[str, Any]]:
    """The role's permission policies: inline ones, then the attached managed ones."""
    return list(role.policies.values()) + [
        default_document(policy) for policy in list(role.managed_policies.values())
    ]


def evaluable(document: str | dict[str, Any]) -> str:
    """The policy as moto's ``IAMPolicy`` evaluates it faithfully.

    Actions are matched case-insensitively (lowered on both sides). Statements with a ``Condition``
    or ``NotResource`` are left out (moto would turn a conditional Allow into a Deny and a
    ``NotResource`` Allow into an Allow of everything), and so are statements without ``Resource``
    (IAM refuses such an identity policy; moto would count even a Deny of that kind as an Allow), so
    they never grant, nor deny, anything here.
    """
    policy = parse_policy(document)
    statements = policy.get("Statement", [])
    kept = []
    for statement in statements if isinstance(statements, list) else [statements]:
        if (
            not isinstance(statement, dict)
            or "Condition" in statement
            or "NotResource" in statement
            or not statement.get("Resource")
        ):
            continue
        statement = dict(statement)
        for field in ("Action", "NotAction"):
            if field in statement:
                value = statement[field]
                statement[field] = (
                    [str(a).lower() for a in value] if isinstance(value, list) else str(value).lower()
                )
        kept.append(statement)
    return json.dumps({"Version": policy.get("Version", "2012-10-17"), "Statement": kept})


def documents_allow(documents: list[str | dict[str, Any]], action: str, resource: str) -> bool:
    """Whether these permission policies together allow ``action`` on ``resource``."""
    return _allows([IAMPolicy(evaluable(d)) for d in documents], action, resource)


def _allows(policies: list[IAMPolicy], action: str, resource: str) -> bool:
    results = [p.is_action_permitted(action.lower(), resource) for p in policies]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results


def s3_arn(bucket: str, key: str | None = None, partition: str = "aws") -> str:
    """The ARN IAM matches for an S3 bucket, or for an object in it."""
    return f"arn:{partition}:s3:::{bucket}" if key is None else f"arn:{partition}:s3:::{bucket}/{key}"


class RolePermissions:
    """One role's permissions, read from IAM once (on first use) and every verdict cached.

    Create one per job or deployment: a policy changed afterwards is not seen by it, as a service
    keeps the credentials it got when it assumed the role. A role that does not exist allows nothing.
    """

    def __init__(self, role_arn: str, role: Any | None = None) -> None:
        self.role_arn = role_arn
        self._role = role
        self._policies: list[IAMPolicy] | None = None
        self._verdicts: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()

    @property
    def partition(self) -> str:
        parts = split_role_arn(self.role_arn)
        return parts[0] if parts else "aws"

    def exists(self) -> bool:
        return self._load() is not None

    def _load(self) -> Any | None:
        if self._role is None:
            self._role = find_role(self.role_arn)
        return self._role

    def policies(self) -> list[IAMPolicy]:
        with self._lock:
            if self._policies is None:
                role = self._load()
                documents = role_documents(role) if role is not None else []
                self._policies = [IAMPolicy(evaluable(d)) for d in documents]
            return self._policies

    def allows(self, action: str, resource: str) -> bool:
        """Whether the role may perform ``action`` (``service:Action``) on the resource ARN."""
        key = (action.lower(), resource)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = _allows(self.policies(), action, resource)
            self._verdicts[key] = verdict
        return verdict

    def allows_s3(self, action: str, bucket: str, key: str | None = None) -> bool:
        """``allows`` on an S3 bucket (``key`` None) or object, in the role's partition."""
        return self.allows(action, s3_arn(bucket, key, self.partition))
