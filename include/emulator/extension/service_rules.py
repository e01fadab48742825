"""What AWS refuses and moto 5.2.5 accepts: deprecated Lambda runtimes and roles a service cannot assume.

:func:`register` wraps the handlers installed on moto's response classes at that moment (moto's own
or those our extension put there: register this after :mod:`.training` and :mod:`.groundtruth`).
Each wrapper runs its check, raising the error AWS answers, then calls the handler it wraps.

**Lambda runtimes.** CreateFunction refuses a runtime on and after its "block function create" date;
UpdateFunctionConfiguration and UpdateFunctionCode refuse, on and after the "block function update"
date, the runtime the function would run (the new ``Runtime`` if the request sets one, otherwise
the function's own), so a function on a blocked runtime can still be moved to a supported one.
AWS answers ``InvalidParameterValueException`` "The runtime parameter of python3.7 is no longer
supported for creating or updating AWS Lambda functions. We recommend you use the new runtime
(python3.14) while creating or updating functions." (the wording users quote, e.g.
aws-samples/aws-cdk-examples#1003, diodonfrost/terraform-aws-lambda-scheduler-stop-start#59; an
UpdateFunctionCode refused so on a nodejs8.10 function: motdotla/node-lambda#526).

**Role trust** (evaluated by :mod:`.trust_policy` on the role moto's IAM holds):

- Lambda CreateFunction, UpdateFunctionConfiguration (``Role``): ``lambda.amazonaws.com``, else
  ``InvalidParameterValueException`` "The role defined for the function cannot be assumed by
  Lambda." (pdomala/LambdaCDDemo#1, nficano/python-lambda#28; moto already says so for a role that
  does not exist). Greengrass V1 Lambda functions are ordinary Lambda functions.
- SageMaker CreateTrainingJob, CreateHyperParameterTuningJob (every training job definition),
  CreateLabelingJob, CreateModel, and CreateTransformJob (the model's execution role):
  ``sagemaker.amazonaws.com``, else ``ValidationException`` "Could not assume role <arn>. Please
  ensure that the role exists and allows principal 'sagemaker.amazonaws.com' to assume the role."
  (quoted for CreateTransformJob in awslabs/predictive-maintenance-using-machine-learning#3).
- IoT CreateRoleAlias: AWS documents one check at create time, credentialDurationSeconds no longer
  than the role's maximum session duration (API_CreateRoleAlias); the trust of
  ``credentials.iot.amazonaws.com`` is needed only when a device fetches credentials, so it is not
  checked here. Greengrass V1 AssociateRoleToGroup: "The existence of the role is not validated"
  (AWS CLI reference), so nothing is checked; moto has no AssociateServiceRoleToAccount.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.responses import LambdaResponse
from moto.iot.exceptions import InvalidRequestException
from moto.iot.responses import IoTResponse
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse

from emulator.extension.trust_policy import role_trust, split_role_arn

log = logging.getLogger("emulator.rules")

LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"


# --- Lambda runtime lifecycle ----------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeLifecycle:
    """Dates (UTC) from which Lambda blocks creating, then updating, functions on a runtime."""

    deprecated: date
    block_create: date | None
    block_update: date | None
    successor: str | None


def _d(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


# (runtime, deprecation, block function create, block function update, recommended runtime)
# Source: AWS Lambda Developer Guide, "Lambda runtimes", tables "Supported runtimes" and
# "Deprecated runtimes": https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
# Checked against the machine-readable copy AWS's cfn-lint keeps of that page,
# aws-cloudformation/cfn-lint src/cfnlint/data/AdditionalSpecs/LmbdRuntimeLifecycle.json
# (commit afd7953b0, 2026-06-02, "Update Lambda runtime lifecycle dates from AWS docs": AWS moved
# many block dates to 2027-02-01 / 2027-03-03). Update this table when AWS moves a date.
_LIFECYCLE_ROWS: tuple[tuple[str, str, str | None, str | None, str | None], ...] = (
    ("python2.7", "2021-07-15", "2021-07-15", "2022-05-30", "python3.14"),
    ("python3.6", "2022-07-18", "2022-07-18", "2022-08-29", "python3.14"),
    ("python3.7", "2023-12-04", "2024-01-09", "2027-03-03", "python3.14"),
    ("python3.8", "2024-10-14", "2027-02-01", "2027-03-03", "python3.14"),
    ("python3.9", "2025-12-15", "2027-02-01", "2027-03-03", "python3.14"),
    ("python3.10", "2026-10-31", "2027-02-01", "2027-03-03", "python3.14"),
    ("python3.11", "2027-06-30", "2027-07-31", "2027-08-31", "python3.14"),
    ("python3.12", "2028-10-31", "2028-11-30", "2029-01-10", "python3.14"),
    ("python3.13", "2029-06-30", "2029-07-31", "2029-08-31", "python3.14"),
    ("python3.14", "2029-06-30", "2029-07-31", "2029-08-31", None),
    ("nodejs", "2016-08-30", "2016-09-30", "2016-10-31", "nodejs24.x"),
    ("nodejs4.3", "2020-03-05", "2020-02-03", "2020-03-05", "nodejs24.x"),
    ("nodejs4.3-edge", "2020-03-05", "2019-03-31", "2019-04-30", "nodejs24.x"),
    ("nodejs6.10", "2019-08-12", "2019-07-12", "2019-08-12", "nodejs24.x"),
    ("nodejs8.10", "2020-03-06", "2020-02-04", "2020-03-06", "nodejs24.x"),
    ("nodejs10.x", "2021-07-30", "2021-07-30", "2022-02-14", "nodejs24.x"),
    ("nodejs12.x", "2023-03-31", "2023-03-31", "2023-04-30", "nodejs24.x"),
    ("nodejs14.x", "2023-12-04", "2024-01-09", "2027-03-03", "nodejs24.x"),
    ("nodejs16.x", "2024-06-12", "2027-02-01", "2027-03-03", "nodejs24.x"),
    ("nodejs18.x", "2025-09-01", "2027-02-01", "2027-03-03", "nodejs24.x"),
    ("nodejs20.x", "2026-04-30", "2027-02-01", "2027-03-03", "nodejs24.x"),
    ("nodejs22.x", "2027-04-30", "2027-06-01", "2027-07-01", "nodejs24.x"),
    ("nodejs24.x", "2028-04-30", "2028-06-01", "2028-07-01", None),
    ("java8", "2024-01-08", "2024-02-08", "2027-03-03", "java25"),
    ("java8.al2", "2027-06-30", "2027-07-31", "2027-08-31", "java25"),
    ("java11", "2027-06-30", "2027-07-31", "2027-08-31", "java25"),
    ("java17", "2027-06-30", "2027-07-31", "2027-08-31", "java25"),
    ("java21", "2029-06-30", "2029-07-31", "2029-08-31", "java25"),
    ("java25", "2029-06-30", "2029-07-31", "2029-08-31", None),
    ("dotnetcore1.0", "2019-06-27", "2019-06-30", "2019-07-30", "dotnet10"),
    ("dotnetcore2.0", "2019-05-30", "2019-04-30", "2019-05-30", "dotnet10"),
    ("dotnetcore2.1", "2022-01-05", "2022-01-05", "2022-04-13", "dotnet10"),
    ("dotnetcore3.1", "2023-04-03", "2023-04-03", "2023-05-03", "dotnet10"),
    ("dotnet6", "2024-12-20", "2027-02-01", "2027-03-03", "dotnet10"),
    ("dotnet8", "2026-11-10", "2027-02-01", "2027-03-03", "dotnet10"),
    ("dotnet10", "2028-11-14", "2028-12-14", "2029-01-15", None),
    ("ruby2.5", "2021-07-30", "2021-07-30", "2022-03-31", "ruby4.0"),
    ("ruby2.7", "2023-12-07", "2024-01-09", "2027-03-03", "ruby4.0"),
    ("ruby3.2", "2026-03-31", "2027-02-01", "2027-03-03", "ruby4.0"),
    ("ruby3.3", "2027-03-31", "2027-04-30", "2027-05-31", "ruby4.0"),
    ("ruby3.4", "2028-03-31", "2028-04-30", "2028-05-31", "ruby4.0"),
    ("ruby4.0", "2029-03-31", "2029-04-30", "2029-05-31", None),
    ("go1.x", "2024-01-08", "2024-02-08", "2027-03-03", "provided.al2023"),
    ("provided", "2024-01-08", "2024-02-08", "2027-03-03", "provided.al2023"),
    ("provided.al2", "2026-07-31", "2027-02-01", "2027-03-03", "provided.al2023"),
    ("provided.al2023", "2029-06-30", "2029-07-31", "2029-08-31", None),
)
RUNTIME_LIFECYCLE: dict[str, RuntimeLifecycle] = {
    name: RuntimeLifecycle(date.fromisoformat(deprecated), _d(create), _d(update), successor)
    for name, deprecated, create, update, successor in _LIFECYCLE_ROWS
}


def today() -> date:
    """The date the runtime checks compare with (UTC); tests pass their own date instead."""
    return datetime.now(UTC).date()


def runtime_refusal(runtime: str | None, operation: str, on: date | None = None) -> str | None:
    """Lambda's message refusing ``runtime`` for ``operation`` ("create" or "update") on date ``on``.

    None when Lambda accepts it: an unknown or absent runtime (a container image has none), or a
    date before the block date.
    """
    if operation not in ("create", "update"):
        raise ValueError(f"operation must be 'create' or 'update', not {operation!r}")
    lifecycle = RUNTIME_LIFECYCLE.get(runtime or "")
    if lifecycle is None:
        return None
    block = lifecycle.block_create if operation == "create" else lifecycle.block_update
    if block is None or (on or today()) < block:
        return None
    message = (
        f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS "
        "Lambda functions."
    )
    if lifecycle.successor:
        message += (
            f" We recommend you use the new runtime ({lifecycle.successor}) while creating or "
            "updating functions."
        )
    return message


# --- messages ---------------------------------------------------------------------------------

LAMBDA_ROLE_MESSAGE = "The role defined for the function cannot be assumed by Lambda."


def sagemaker_role_message(role_arn: str) -> str:
    """SageMaker's ValidationException message for a role it cannot assume."""
    return (
        f"Could not assume role {role_arn}. Please ensure that the role exists and allows principal "
        f"'{SAGEMAKER_PRINCIPAL}' to assume the role."
    )


# --- checks run before the wrapped handlers ---------------------------------------------------


def _require_sagemaker_role(role_arn: str | None) -> None:
    if not role_arn:
        return
    verdict = role_trust(role_arn, SAGEMAKER_PRINCIPAL)
    if not verdict:
        log.info("refusing SageMaker role %s: %s", role_arn, verdict.reason)
        raise ValidationError(sagemaker_role_message(role_arn))


def _require_lambda_role(self: LambdaResponse, role_arn: str | None) -> None:
    parts = split_role_arn(role_arn or "")
    if parts is None or parts[1] != self.current_account:
        return  # moto answers a malformed or cross-account role itself
    verdict = role_trust(role_arn or "", LAMBDA_PRINCIPAL)
    if not verdict:
        log.info("refusing Lambda role %s: %s", role_arn, verdict.reason)
        raise InvalidParameterValueException(LAMBDA_ROLE_MESSAGE)


def _refuse_runtime(runtime: str | None, operation: str) -> None:
    message = runtime_refusal(runtime, operation)
    if message:
        raise InvalidParameterValueException(message)


def _current_function(self: LambdaResponse) -> Any | None:
    """The function an update request names, or None (the wrapped handler then answers)."""
    name = unquote(self.path.rsplit("/", 2)[-2])
    try:
        return self.backend.get_function(name, self._get_param("Qualifier", None))
    except Exception:
        return None


def _check_create_function(self: LambdaResponse) -> None:
    body = self.json_body
    if body.get("PackageType", "Zip") == "Zip":
        _refuse_runtime(body.get("Runtime"), "create")
    _require_lambda_role(self, body.get("Role"))


def _check_update_function_configuration(self: LambdaResponse) -> None:
    body = self.json_body
    function = _current_function(self)
    if function is not None and function.package_type == "Zip":
        _refuse_runtime(body.get("Runtime") or function.run_time, "update")
    if "Role" in body:
        _require_lambda_role(self, body["Role"])


def _check_update_function_code(self: LambdaResponse) -> None:
    function = _current_function(self)
    if function is not None and function.package_type == "Zip":
        _refuse_runtime(function.run_time, "update")


def _check_training_job(self: SageMakerResponse) -> None:
    _require_sagemaker_role(self._get_param("RoleArn"))


def _check_tuning_job(self: SageMakerResponse) -> None:
    single = self._get_param("TrainingJobDefinition")
    definitions = [single, *(self._get_param("TrainingJobDefinitions") or [])]
    for definition in definitions:
        if definition:
            _require_sagemaker_role(definition.get("RoleArn"))


def _check_labeling_job(self: SageMakerResponse) -> None:
    _require_sagemaker_role(self._get_param("RoleArn"))


def _check_model(self: SageMakerResponse) -> None:
    _require_sagemaker_role(self._get_param("ExecutionRoleArn"))


def _check_transform_job(self: SageMakerResponse) -> None:
    model = self.sagemaker_backend._models.get(self._get_param("ModelName"))
    if model is not None and split_role_arn(model.execution_role_arn or "") is not None:
        _require_sagemaker_role(model.execution_role_arn)


def _check_role_alias(self: IoTResponse) -> None:
    from moto.iam.models import iam_backends

    role_arn = self._get_param("roleArn") or ""
    parts = split_role_arn(role_arn)
    if parts is None:
        return
    backend = iam_backends[parts[1]][parts[0]]
    role = next((r for r in backend.roles.values() if r.arn == role_arn), None)
    duration = self._get_int_param("credentialDurationSeconds", 3600)
    if role is not None and duration > int(role.max_session_duration or 3600):
        # AWS documents the rule, not its wording: this message is the emulator's own.
        raise InvalidRequestException(
            f"credentialDurationSeconds ({duration}) is longer than the maximum session duration "
            f"({role.max_session_duration} seconds) of role {role_arn}"
        )


# --- registration -----------------------------------------------------------------------------

_CHECKS: tuple[tuple[type, str, Callable[[Any], None]], ...] = (
    (LambdaResponse, "create_function", _check_create_function),
    (LambdaResponse, "update_function_configuration", _check_update_function_configuration),
    (LambdaResponse, "update_function_code", _check_update_function_code),
    (SageMakerResponse, "create_training_job", _check_training_job),
    (SageMakerResponse, "create_hyper_parameter_tuning_job", _check_tuning_job),
    (SageMakerResponse, "create_labeling_job", _check_labeling_job),
    (SageMakerResponse, "create_model", _check_model),
    (SageMakerResponse, "create_transform_job", _check_transform_job),
    (IoTResponse, "create_role_alias", _check_role_alias),
)


def _checked(check: Callable[[Any], None], handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapper(self: Any) -> Any:
        check(self)
        return handler(self)

    wrapper.__name__ = getattr(handler, "__name__", "handler")
    wrapper.__wrapped__ = handler  # type: ignore[attr-defined]
    wrapper._emulator_check = check  # type: ignore[attr-defined]
    return wrapper


def register() -> None:
    """Put each check in front of the handler now installed for its action (idempotent)."""
    for response_class, action, check in _CHECKS:
        handler = getattr(response_class, action)
        if getattr(handler, "_emulator_check", None) is check:
            continue
        setattr(response_class, action, _checked(check, handler))
