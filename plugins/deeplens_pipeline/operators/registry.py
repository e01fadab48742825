"""The model registry in the run: register the candidate, the gate, then approve or reject it.

- :class:`RegisterModelOperator`: the candidate becomes a version of this environment's model package
  group (created if missing), with its holdout metrics; a retried task finds its version by the
  run's token in the version's metadata (and sends the same ClientToken), so it never registers twice.
- :class:`GateOperator`: the branch in the graph: ``approve_model`` if the candidate's holdout mAP
  reaches ``params.min_map`` and the current model's minus ``params.max_regression``, else
  ``reject_model``.
- :class:`RejectModelOperator`: marks the version Rejected with the gate's reason; the run ends green.
- :class:`ApproveModelOperator`: approves the version (or, with ``params.require_approval``, waits in
  the triggerer until someone approves or rejects it in the console or with the CLI), then returns
  the registry's newest Approved version: what repack and deploy take.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from deeplens_pipeline import registry
from deeplens_pipeline.airflow_compat import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    BaseBranchOperator,
)
from deeplens_pipeline.operators.base import ParamsSerializedOnce, PipelineOperator, run_config, run_scope
from deeplens_pipeline.training import object_detection_image

APPROVAL_TIMEOUT = timedelta(days=14)
"""How long after its registration a version waits for a person's decision: then ``approve_model``
fails, without retrying (a retry would only wait again), and the device keeps its model."""
APPROVAL_BACKSTOP = timedelta(hours=1)
"""Beyond the deadline, Airflow's own deferral timeout: only if the triggerer missed the deadline."""


def approval_deadline(description: dict[str, Any]) -> datetime:
    """When the wait for a decision on a version ends: :data:`APPROVAL_TIMEOUT` after its creation
    (the same for every try of the task, so a retry or a cleared task does not restart the clock)."""
    created = description.get("CreationTime")
    if not isinstance(created, datetime):
        created = datetime.now(UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created + APPROVAL_TIMEOUT


def sagemaker_client(aws_conn_id: str, region: str) -> Any:
    """A boto3 SageMaker client on the pipeline's connection (imported when a task runs)."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id, region_name=region).get_conn()


def group_of(context: Any) -> str:
    """This environment's and DAG's model package group."""
    scope = run_scope(context)
    return registry.group_name(scope.environment, scope.dag_id)


def version_result(version: registry.RegisteredModel, group: str, **extra: Any) -> dict[str, Any]:
    """What the registry tasks return about a version (JSON-serialisable)."""
    return {
        "group": group,
        "arn": version.arn,
        "version": version.version,
        "status": version.status,
        "model_artifact": version.model_artifact,
        "image": version.image,
        "holdout_map": version.holdout_map,
        "approval_description": version.approval_description or None,
        **extra,
    }


class RegisterModelOperator(PipelineOperator):
    """Register ``candidate`` (evaluate_candidate's result) as a version, PendingManualApproval.

    ``model`` is pick_model's result (the training job). Returns :func:`version_result` of the
    version with ``"created"`` (False when a retry found it).
    """

    template_fields = ("candidate", "model")
    ui_color = "#e8f0f8"

    def __init__(self, *, candidate: Any, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate = candidate
        self.model = model

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        scope = run_scope(context)
        candidate = dict(self.candidate or {})
        model = dict(self.model or {})
        artifact = candidate.get("model_artifact") or model.get("model_artifact")
        if not artifact or candidate.get("map") is None:
            raise AirflowFailException(f"register_model needs the candidate's evaluation, got {candidate!r}")
        client = sagemaker_client(self.aws_conn_id, config["region"])
        group = registry.group_name(scope.environment, scope.dag_id)
        registry.ensure_group(client, group, f"DeepLens object detection models of DAG {scope.dag_id}")
        found = registry.find_run_version(client, group, scope.token)
        if found is not None:
            if found.model_artifact != artifact:
                raise AirflowFailException(
                    f"This run already registered {found.arn} with {found.model_artifact}, not {artifact}: "
                    "trigger a new run"
                )
            self.log.info("This run's version %s exists (%s): not registering again", found.arn, found.status)
            return version_result(found, group, created=False)
        try:
            metadata = registry.version_metadata(
                classes=config["classes"],
                base_network=config["base_network"],
                image_shape=config["image_shape"],
                run_id=scope.run_id,
                run_token=scope.token,
                training_job=model.get("training_job") or "",
                holdout_map=float(candidate["map"]),
                per_class_ap={n: c.get("ap") for n, c in (candidate.get("per_class") or {}).items()},
            )
        except ValueError as err:
            raise AirflowFailException(str(err)) from None
        request = registry.register_request(
            group=group,
            image=object_detection_image(config["region"], config.get("training_image", "")),
            model_artifact=artifact,
            metrics_uri=candidate["metrics_uri"],
            metadata=metadata,
            token=registry.client_token(scope.token),
            description=f"Run {scope.run_id}: training job {model.get('training_job')}, "
            f"holdout mAP {float(candidate['map']):.4f}",
        )
        arn = client.create_model_package(**request)["ModelPackageArn"]
        version = registry.registered_model(client.describe_model_package(ModelPackageName=arn))
        self.log.info(
            "Registered %s (version %s of %s): holdout mAP %s, %s", arn, version.version, group,
            metadata[registry.META_MAP], version.status,
        )  # fmt: skip
        return version_result(version, group, created=True)


class GateOperator(ParamsSerializedOnce, BaseBranchOperator):
    """Follow ``approve_task_id`` if the candidate may replace the current model, else ``reject_task_id``.

    ``candidate`` and ``current`` are the two evaluations; the decision (``deploy``, ``decision``
    "deploy"/"keep", ``reason``, both mAPs and the thresholds) is logged and pushed as the XCom
    ``decision``. ``also_follow`` (task ids) are followed either way (the evaluation report).
    """

    template_fields = ("candidate", "current")
    ui_color = "#f8e8c8"

    def __init__(
        self,
        *,
        candidate: Any,
        current: Any,
        approve_task_id: str,
        reject_task_id: str,
        also_follow: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.also_follow = tuple(also_follow)
        self.candidate = candidate
        self.current = current
        self.approve_task_id = approve_task_id
        self.reject_task_id = reject_task_id

    def choose_branch(self, context: Any) -> str | list[str]:
        config = run_config(context)
        candidate = dict(self.candidate or {})
        current = dict(self.current or {})
        if candidate.get("map") is None:
            raise AirflowFailException(f"the gate needs the candidate's holdout mAP, got {candidate!r}")
        current_map = current.get("map")
        if current_map is None:
            self.log.info("No current model to compare with: %s", current.get("reason", "none"))
        decision = registry.decide_gate(
            float(candidate["map"]),
            None if current_map is None else float(current_map),
            float(config["min_map"]),
            float(config["max_regression"]),
        ).as_dict()
        decision["current_reason"] = current.get("reason")
        self.log.info(
            "Gate: %s — %s", "deploy" if decision["deploy"] else "keep the current model", decision["reason"]
        )
        context["ti"].xcom_push(key="decision", value=decision)
        chosen = self.approve_task_id if decision["deploy"] else self.reject_task_id
        return [chosen, *self.also_follow] if self.also_follow else chosen


class RejectModelOperator(PipelineOperator):
    """The gate's "no": mark the version Rejected with the reason; the device keeps the current model."""

    template_fields = ("registered", "decision")
    ui_color = "#f4f1e8"

    def __init__(self, *, registered: Any, decision: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered = registered
        self.decision = decision

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        registered = dict(self.registered or {})
        reason = str((self.decision or {}).get("reason") or "the gate refused it")
        client = sagemaker_client(self.aws_conn_id, config["region"])
        description = f"Kept the current model: {reason}"[: registry.APPROVAL_DESCRIPTION_MAX]
        current = registry.registered_model(client.describe_model_package(ModelPackageName=registered["arn"]))
        if current.status != registry.REJECTED:
            client.update_model_package(
                ModelPackageArn=registered["arn"],
                ModelApprovalStatus=registry.REJECTED,
                ApprovalDescription=description,
            )
        self.log.info("Kept the current model: %s (rejected %s)", reason, registered["arn"])
        return {
            "kept_current_model": True,
            "reason": reason,
            "arn": registered["arn"],
            "status": registry.REJECTED,
            "gate": dict(self.decision or {}),
        }


class ApproveModelOperator(PipelineOperator):
    """Approve the gate-passed version, or wait for a person's decision with ``params.require_approval``.

    Approved: returns the registry's newest Approved version (:func:`version_result`, with
    ``approved_by``); repack and deploy take its ``model_artifact``. Rejected by a person: pushes
    the XCom ``approval`` (status, who and why) and skips, so the deploy path is skipped and the
    device keeps its model. The XCom ``approval`` is pushed in both cases.
    """

    template_fields = ("registered", "decision")
    ui_color = "#e0f0e0"

    def __init__(self, *, registered: Any, decision: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registered = registered
        self.decision = decision

    def execute(self, context: Any) -> dict[str, Any]:
        config = run_config(context)
        arn = self.registered["arn"]
        client = sagemaker_client(self.aws_conn_id, config["region"])
        description = client.describe_model_package(ModelPackageName=arn)
        status = description.get("ModelApprovalStatus") or registry.PENDING
        if status == registry.PENDING and not config["require_approval"]:
            reason = str((self.decision or {}).get("reason") or "it passed the gate")
            client.update_model_package(
                ModelPackageArn=arn,
                ModelApprovalStatus=registry.APPROVED,
                ApprovalDescription=f"Approved by run {context['run_id']}: {reason}"[
                    : registry.APPROVAL_DESCRIPTION_MAX
                ],
            )
            self.log.info("Approved %s (require_approval is off)", arn)
            description = client.describe_model_package(ModelPackageName=arn)
            status = registry.APPROVED
        if status != registry.PENDING:
            return self._decided(context, client, description)
        deadline = approval_deadline(description)
        if not isinstance(description.get("CreationTime"), datetime):
            self.log.warning("%s has no CreationTime: the wait counts from now", arn)
        if datetime.now(UTC) >= deadline:
            self._no_decision(arn, deadline)
        self.log.info(
            "Waiting for a decision on %s. Approve it in the SageMaker console (Model registry) or with:\n"
            "  aws sagemaker update-model-package --model-package-arn %s --model-approval-status Approved\n"
            "or reject it (--model-approval-status Rejected --approval-description 'why'). "
            "Waiting until %s.",
            arn,
            arn,
            deadline.isoformat(timespec="seconds"),
        )
        self._defer(config, arn, deadline)
        return {}  # not reached: defer raises

    def _defer(self, config: dict[str, Any], arn: str, deadline: datetime) -> None:
        from deeplens_pipeline.triggers.registry import ModelApprovalTrigger

        self.defer(
            trigger=ModelApprovalTrigger(
                model_package_arn=arn,
                poll_seconds=config["poll_seconds"],
                aws_conn_id=self.aws_conn_id,
                region_name=config["region"],
                deadline=deadline.timestamp(),
            ),
            method_name="execute_complete",
            timeout=deadline - datetime.now(UTC) + APPROVAL_BACKSTOP,
        )

    def _no_decision(self, arn: str, deadline: datetime) -> None:
        raise AirflowFailException(
            f"nobody approved or rejected {arn} by {deadline.isoformat(timespec='seconds')} "
            f"({APPROVAL_TIMEOUT.days} days after it was registered): the device keeps its current model. "
            "To deploy this version, approve it (aws sagemaker update-model-package --model-package-arn "
            f"{arn} --model-approval-status Approved) and clear approve_model with its downstream tasks; "
            "a retry would only wait again"
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: act on the decision someone made."""
        config = run_config(context)
        arn = self.registered["arn"]
        client = sagemaker_client(self.aws_conn_id, config["region"])
        description = client.describe_model_package(ModelPackageName=arn)
        if (description.get("ModelApprovalStatus") or registry.PENDING) == registry.PENDING:
            deadline = approval_deadline(description)
            if (event or {}).get("status") == "timeout" or datetime.now(UTC) >= deadline:
                self._no_decision(arn, deadline)
            raise AirflowException(f"{arn} is still waiting for approval: {event}")
        return self._decided(context, client, description)

    def _decided(self, context: Any, client: Any, description: dict[str, Any]) -> dict[str, Any]:
        version = registry.registered_model(description)
        group = self.registered.get("group") or group_of(context)
        who = registry.who_changed(description)
        if version.status == registry.REJECTED:
            result = version_result(
                version, group, approved_by=None, rejected_by=who, gate=dict(self.decision or {})
            )
            context["ti"].xcom_push(key="approval", value=result)
            self.log.info(
                "%s was rejected by %s: %s. The device keeps the current model.",
                version.arn,
                who,
                version.approval_description or "no reason given",
            )
            raise AirflowSkipException(f"{version.arn} was rejected by {who}: {version.approval_description}")
        newest = registry.current_model(client, group) or version
        if newest.arn != version.arn:
            self.log.warning(
                "The newest Approved version is %s, not this run's %s: deploying it", newest.arn, version.arn
            )
        result = version_result(
            newest, group, approved_by=who, run_version_arn=version.arn, gate=dict(self.decision or {})
        )
        context["ti"].xcom_push(key="approval", value=result)
        self.log.info("Deploying %s (version %s): %s", newest.arn, newest.version, newest.model_artifact)
        return result
