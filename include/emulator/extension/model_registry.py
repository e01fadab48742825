"""The SageMaker model registry as AWS keeps it, where moto 5.2.5 differs (model package groups and versions).

Checked against the SageMaker API model (botocore ``sagemaker/2017-07-24/service-2.json``:
``CreateModelPackageInput``, ``CustomerMetadataMap``/``Key``/``Value``, ``ClientToken``,
``ApprovalDescription``, ``UpdateModelPackageInput``) and the API reference pages of
CreateModelPackage, CreateModelPackageGroup and UpdateModelPackage. botocore checks types and
minimum lengths on the client; the service checks the rest, so the emulator does:

- **CreateModelPackageGroup** refuses a name already taken (``ValidationException`` "Model Package
  Group already exists: <arn>"); moto silently replaced the group.
- **CreateModelPackage** and **UpdateModelPackage** refuse customer metadata SageMaker refuses: more
  than 50 entries, a key over 128 or a value over 256 characters, or a character outside
  ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` (``ValidationException`` naming the constraint, as AWS's
  "failed to satisfy constraint" messages do). An ``ApprovalDescription`` over 1024 characters too.
- **CreateModelPackage** with a ``ClientToken`` already used for a version of the same group answers
  that version's ARN instead of creating another ("a unique token that guarantees that the call to
  this API is idempotent"); a versioned package created without ``ModelApprovalStatus`` is
  ``PendingManualApproval`` (moto left it empty; SageMaker lists it so).
- **UpdateModelPackage** changes only what the request sets: moto erased the version's customer
  metadata, approval description and approval status when an update (an approval from the console
  or the CLI, a metadata change) left them out; new metadata is merged, and
  ``CustomerMetadataPropertiesToRemove`` removes keys.
  A versioned package exists in a group that exists (moto already refuses one in a missing group).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse

METADATA_MAX_ENTRIES = 50
METADATA_KEY_MAX = 128
METADATA_VALUE_MAX = 256
APPROVAL_DESCRIPTION_MAX = 1024
PENDING = "PendingManualApproval"


def _admitted(char: str) -> bool:
    """``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]``: letters, separators (spaces), numbers and ``_.:/=+-@``."""
    return char in "_.:/=+-@" or unicodedata.category(char)[0] in "LZN"


def metadata_problem(metadata: dict[str, Any] | None, field: str) -> str | None:
    """SageMaker's complaint about ``metadata`` (CustomerMetadataProperties), or None."""
    if metadata is None:
        return None
    if not 1 <= len(metadata) <= METADATA_MAX_ENTRIES:
        return (
            f"1 validation error detected: Value '{metadata}' at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {METADATA_MAX_ENTRIES}"
        )
    for key, value in metadata.items():
        for what, text, limit in (("key", key, METADATA_KEY_MAX), ("value", value, METADATA_VALUE_MAX)):
            text = str(text)
            if not 1 <= len(text) <= limit:
                return (
                    f"1 validation error detected: Value '{text}' at '{field}' failed to satisfy constraint: "
                    f"Map {what} must have length between 1 and {limit}"
                )
            if not all(_admitted(c) for c in text):
                return (
                    f"1 validation error detected: Value '{text}' at '{field}' failed to satisfy constraint: "
                    f"Map {what} must satisfy regular expression pattern: "
                    f"^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)${{1,{limit}}}"
                )
    return None


def _check_metadata(self: SageMakerResponse) -> None:
    problem = metadata_problem(self._get_param("CustomerMetadataProperties"), "customerMetadataProperties")
    if problem:
        raise ValidationError(problem)


def _check_approval_description(self: SageMakerResponse) -> None:
    text = self._get_param("ApprovalDescription")
    if text is not None and len(text) > APPROVAL_DESCRIPTION_MAX:
        raise ValidationError(
            "1 validation error detected: Value at 'approvalDescription' failed to satisfy constraint: "
            f"Member must have length less than or equal to {APPROVAL_DESCRIPTION_MAX}"
        )


def _group_name(self: SageMakerResponse) -> str | None:
    name = self._get_param("ModelPackageGroupName")
    return name.rsplit("/", 1)[-1] if name else None


def create_model_package_group(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapper(self: SageMakerResponse) -> Any:
        name = self._get_param("ModelPackageGroupName")
        existing = self.sagemaker_backend.model_package_groups.get(name)
        if existing is not None:
            raise ValidationError(f"Model Package Group already exists: {existing.arn}")
        return handler(self)

    return wrapper


def create_model_package(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapper(self: SageMakerResponse) -> Any:
        _check_metadata(self)
        backend = self.sagemaker_backend
        group, token = _group_name(self), self._get_param("ClientToken")
        if token and group:
            for package in list(backend.model_packages.values()):
                if package.client_token == token and package.model_package_group_name == group:
                    return ActionResult({"ModelPackageArn": package.arn})
        result = handler(self)
        if group and not self._get_param("ModelApprovalStatus"):
            newest = max(
                (p for p in backend.model_packages.values() if p.model_package_group_name == group),
                key=lambda p: p.model_package_version or 0,
            )
            newest.model_approval_status = PENDING
        return result

    return wrapper


def update_model_package(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapper(self: SageMakerResponse) -> Any:
        _check_metadata(self)
        _check_approval_description(self)
        backend = self.sagemaker_backend
        arn = self._get_param("ModelPackageArn")
        package = backend.model_packages.get(backend.model_package_name_mapping.get(arn, arn))
        before = (
            (
                dict(package.customer_metadata_properties or {}),
                package.approval_description,
                package.model_approval_status,
            )
            if package is not None
            else None
        )
        result = handler(self)
        if package is not None and before is not None:
            metadata, description, status = before
            metadata.update(self._get_param("CustomerMetadataProperties") or {})
            for key in self._get_param("CustomerMetadataPropertiesToRemove") or []:
                metadata.pop(key, None)
            package.customer_metadata_properties = metadata or None
            if self._get_param("ApprovalDescription") is None:
                package.approval_description = description
            if self._get_param("ModelApprovalStatus") is None:
                package.model_approval_status = status
            problem = metadata_problem(package.customer_metadata_properties, "customerMetadataProperties")
            if problem:  # pragma: no cover - merged entries beyond 50: put the old ones back
                package.customer_metadata_properties = before[0] or None
                raise ValidationError(problem)
        return result

    return wrapper


_WRAPPERS: tuple[tuple[str, Callable[[Callable[[Any], Any]], Callable[[Any], Any]]], ...] = (
    ("create_model_package_group", create_model_package_group),
    ("create_model_package", create_model_package),
    ("update_model_package", update_model_package),
)


def register() -> None:
    """Put the registry's rules in front of moto's handlers (idempotent)."""
    for action, wrap in _WRAPPERS:
        handler = getattr(SageMakerResponse, action)
        if getattr(handler, "_emulator_registry", False):
            continue
        wrapped = wrap(handler)
        wrapped.__name__ = action
        wrapped.__wrapped__ = handler  # type: ignore[attr-defined]
        wrapped._emulator_registry = True  # type: ignore[attr-defined]
        setattr(SageMakerResponse, action, wrapped)
