"""The registry tasks against the emulator: register once, the gate's branch, reject, approve or wait."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from deeplens_pipeline import registry
from deeplens_pipeline.airflow_compat import AirflowFailException, AirflowSkipException, TaskDeferred
from deeplens_pipeline.operators.base import run_scope
from deeplens_pipeline.operators.evaluation import EvaluateCurrentModelOperator
from deeplens_pipeline.operators.registry import (
    ApproveModelOperator,
    GateOperator,
    RegisterModelOperator,
    RejectModelOperator,
)
from deeplens_pipeline.params import validate_params
from deeplens_pipeline.triggers.registry import ModelApprovalTrigger

BUCKET = "deeplens-registry-op"
ARTIFACT = f"s3://{BUCKET}/output/run/output/model.tar.gz"
CLASSES = ["blue_box", "yellow_box"]


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def context(dag_id: str, run_id: str = "manual__2026-11-26T07:00:00+00:00", **params: Any) -> dict:
    checked = validate_params({"bucket": BUCKET, "classes": CLASSES, "poll_seconds": 1, **params})
    return {"run_id": run_id, "dag_run": SimpleNamespace(dag_id=dag_id), "params": checked, "ti": FakeTI()}


def candidate(score: float = 0.5, artifact: str = ARTIFACT) -> dict:
    return {
        "label": "candidate",
        "map": score,
        "per_class": {"blue_box": {"ap": 0.6}, "yellow_box": {"ap": 0.4}},
        "model_artifact": artifact,
        "metrics_uri": f"s3://{BUCKET}/evaluation/run/candidate.json",
    }


PICKED = {"training_job": "deeplens-train-0123456789", "model_artifact": ARTIFACT}


@pytest.fixture
def dag_id() -> str:
    """A DAG id of its own per test: its own model package group."""
    return f"deeplens_registry_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sm(emulator):
    return boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1")


def register(ctx: dict, **kwargs: Any) -> dict:
    kwargs.setdefault("candidate", candidate())
    return RegisterModelOperator(task_id="register_model", model=PICKED, **kwargs).execute(ctx)


def test_registers_the_candidate_once_even_when_retried(aws_conn, sm, dag_id) -> None:
    ctx = context(dag_id)
    first = register(ctx)
    assert first["created"] and first["status"] == registry.PENDING and first["version"] == 1
    group = registry.group_name("tests", dag_id)
    assert first["group"] == group and first["arn"].endswith(f"model-package/{group}/1")
    again = register(ctx)  # the retried task finds its version
    assert not again["created"] and again["arn"] == first["arn"]
    description = sm.describe_model_package(ModelPackageName=first["arn"])
    container = description["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == ARTIFACT and "object-detection" in container["Image"]
    stats = description["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats == {"ContentType": "application/json", "S3Uri": candidate()["metrics_uri"]}
    version = registry.registered_model(description)
    assert version.classes == CLASSES and version.holdout_map == 0.5
    assert version.metadata["training_job"] == PICKED["training_job"]
    assert version.metadata["ap.0"] == "0.600000" and version.metadata["base_network"] == "resnet-50"
    # Another run is another version of the same group.
    other = register(context(dag_id, run_id="manual__2026-11-26T08:00:00+00:00"))
    assert other["created"] and other["version"] == 2
    versions = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert len(versions) == 2


def test_another_artefact_in_the_same_run_is_refused(aws_conn, dag_id) -> None:
    ctx = context(dag_id)
    register(ctx)
    with pytest.raises(AirflowFailException, match="already registered"):
        register(ctx, candidate=candidate(artifact=f"s3://{BUCKET}/other/model.tar.gz"))


def gate(ctx: dict, cand: dict, current: dict) -> str:
    operator = GateOperator(
        task_id="gate",
        candidate=cand,
        current=current,
        approve_task_id="approve_model",
        reject_task_id="reject_model",
    )
    return operator.choose_branch(ctx)


def test_the_gate_follows_the_rule_and_says_why(dag_id) -> None:
    ctx = context(dag_id, min_map=0.3, max_regression=0.02)
    assert gate(ctx, candidate(0.5), {"map": None, "reason": "no current model: ..."}) == "approve_model"
    assert ctx["ti"].pushed["decision"]["deploy"] is True
    assert ctx["ti"].pushed["decision"]["current_reason"] == "no current model: ..."
    assert gate(ctx, candidate(0.5), {"map": 0.51}) == "approve_model"
    assert gate(ctx, candidate(0.5), {"map": 0.6}) == "reject_model"
    decision = ctx["ti"].pushed["decision"]
    assert decision == {
        "deploy": False,
        "decision": "keep",  # as the evaluation report reads it
        "reason": decision["reason"],
        "candidate_map": 0.5,
        "current_map": 0.6,
        "min_map": 0.3,
        "max_regression": 0.02,
        "current_reason": None,
    }
    assert "below the current model's 0.6000" in decision["reason"]
    assert gate(ctx, candidate(0.2), {"map": None}) == "reject_model"
    with pytest.raises(AirflowFailException, match="holdout mAP"):
        gate(ctx, {"map": None}, {})


def test_reject_marks_the_version_rejected_with_the_reason(aws_conn, sm, dag_id) -> None:
    ctx = context(dag_id)
    registered = register(ctx)
    decision = {"deploy": False, "reason": "the new model's holdout mAP 0.5000 is below min_map 0.9000"}
    reject = RejectModelOperator(task_id="reject_model", registered=registered, decision=decision)
    result = reject.execute(ctx)
    assert result["kept_current_model"] and result["reason"] == decision["reason"]
    assert result["gate"] == decision
    description = sm.describe_model_package(ModelPackageName=registered["arn"])
    assert description["ModelApprovalStatus"] == "Rejected"
    assert description["ApprovalDescription"] == f"Kept the current model: {decision['reason']}"
    assert reject.execute(ctx)["status"] == "Rejected"  # a retry changes nothing
    assert registry.current_model(sm, registered["group"]) is None


def test_approve_without_require_approval_approves_and_deploys_the_newest_approved(
    aws_conn, sm, dag_id
) -> None:
    ctx = context(dag_id)
    registered = register(ctx)
    decision = {"deploy": True, "reason": "the new model's holdout mAP 0.5000 reaches min_map 0.0000"}
    approve = ApproveModelOperator(task_id="approve_model", registered=registered, decision=decision)
    result = approve.execute(ctx)
    assert result["status"] == registry.APPROVED and result["arn"] == registered["arn"]
    assert result["model_artifact"] == ARTIFACT  # what repack takes
    assert result["gate"] == decision and ctx["ti"].pushed["approval"] == result
    description = sm.describe_model_package(ModelPackageName=registered["arn"])
    assert description["ApprovalDescription"].startswith("Approved by run manual__")
    assert registry.current_model(sm, registered["group"]).arn == registered["arn"]
    assert approve.execute(ctx)["arn"] == registered["arn"]  # a retry: already approved


def run_trigger(trigger: ModelApprovalTrigger, decide) -> dict:
    """Run the trigger until its event; ``decide()`` is called (as a person would act) after a poll."""

    async def main() -> dict:
        async def person() -> None:
            await asyncio.sleep(3.5)  # after at least one poll that finds it pending
            decide()

        task = asyncio.create_task(person())
        async for event in trigger.run():
            await task
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_require_approval_waits_in_the_triggerer_until_a_person_approves(
    aws_conn, sm, dag_id, capsys
) -> None:
    ctx = context(dag_id, require_approval=True)
    registered = register(ctx)
    approve = ApproveModelOperator(task_id="approve_model", registered=registered, decision={"deploy": True})
    with pytest.raises(TaskDeferred) as deferred:
        approve.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ModelApprovalTrigger) and trigger.model_package_arn == registered["arn"]
    assert deferred.value.method_name == "execute_complete"
    assert (
        sm.describe_model_package(ModelPackageName=registered["arn"])["ModelApprovalStatus"]
        == registry.PENDING
    )
    # The trigger as the triggerer runs it (serialised, then rebuilt).
    path, kwargs = trigger.serialize()
    assert path == "deeplens_pipeline.triggers.registry.ModelApprovalTrigger"
    rebuilt = ModelApprovalTrigger(**kwargs)
    capsys.readouterr()
    event = run_trigger(
        rebuilt,
        lambda: sm.update_model_package(ModelPackageArn=registered["arn"], ModelApprovalStatus="Approved"),
    )
    log = capsys.readouterr().out
    assert event["status"] == "Approved" and event["arn"] == registered["arn"]
    assert "Still PendingManualApproval after" in log and "--model-approval-status Approved" in log
    result = approve.execute_complete(ctx, event)
    assert result["status"] == registry.APPROVED and result["approved_by"]
    assert result["model_artifact"] == ARTIFACT


def test_a_person_rejecting_the_version_skips_the_deploy_path_and_says_who_and_why(
    aws_conn, sm, dag_id
) -> None:
    ctx = context(dag_id, require_approval=True)
    registered = register(ctx)
    approve = ApproveModelOperator(task_id="approve_model", registered=registered, decision={"deploy": True})
    with pytest.raises(TaskDeferred):
        approve.execute(ctx)
    sm.update_model_package(
        ModelPackageArn=registered["arn"],
        ModelApprovalStatus="Rejected",
        ApprovalDescription="boxes drift on the yellow ones",
    )
    with pytest.raises(AirflowSkipException, match="boxes drift on the yellow ones"):
        approve.execute_complete(ctx, {"status": "Rejected"})
    approval = ctx["ti"].pushed["approval"]
    assert approval["status"] == "Rejected" and approval["rejected_by"]
    assert approval["approval_description"] == "boxes drift on the yellow ones"
    # Still waiting: execute_complete refuses to go on (the task would retry, not deploy).
    pending = register(context(dag_id, run_id="manual__2026-11-26T09:00:00+00:00", require_approval=True))
    waiting = ApproveModelOperator(task_id="approve_model", registered=pending)
    with pytest.raises(Exception, match="still waiting for approval"):
        waiting.execute_complete(context(dag_id, require_approval=True), {"status": "PendingManualApproval"})


def test_no_decision_by_the_deadline_fails_once_without_waiting_again(
    aws_conn, sm, dag_id, monkeypatch
) -> None:
    """The wait ends 14 days after the version's registration: the trigger's timeout event fails
    the task for good (no retry that would wait again), and so does a try started after it."""
    from deeplens_pipeline.operators import registry as registry_ops

    ctx = context(dag_id, require_approval=True)
    registered = register(ctx)
    approve = ApproveModelOperator(task_id="approve_model", registered=registered, decision={"deploy": True})
    created = sm.describe_model_package(ModelPackageName=registered["arn"])["CreationTime"]
    with pytest.raises(TaskDeferred) as deferred:
        approve.execute(ctx)
    trigger = deferred.value.trigger
    assert trigger.deadline == pytest.approx((created + registry_ops.APPROVAL_TIMEOUT).timestamp())
    assert deferred.value.timeout > registry_ops.APPROVAL_TIMEOUT - timedelta(minutes=5)
    with pytest.raises(AirflowFailException, match=r"nobody approved or rejected .* keeps its current model"):
        approve.execute_complete(ctx, {"status": "timeout"})
    # A retry (or a cleared task) past the deadline fails at once instead of waiting another 14 days.
    monkeypatch.setattr(registry_ops, "APPROVAL_TIMEOUT", timedelta(0))
    with pytest.raises(AirflowFailException, match="a retry would only wait again"):
        approve.execute(ctx)
    # Approved after the deadline, then cleared: the task deploys it.
    sm.update_model_package(ModelPackageArn=registered["arn"], ModelApprovalStatus="Approved")
    assert approve.execute(ctx)["status"] == registry.APPROVED


def test_evaluate_current_without_an_approved_version_runs_no_job(aws_conn, sm, dag_id) -> None:
    ctx = context(dag_id)
    operator = EvaluateCurrentModelOperator(task_id="evaluate_current", holdout_manifest=f"s3://{BUCKET}/x")
    result = operator.execute(ctx)
    assert result["map"] is None and result["no_current_model"] is True
    assert "no Approved version in model package group" in result["reason"]
    from deeplens_pipeline.operators.evaluation import evaluation_name

    name = evaluation_name(run_scope(ctx), "current")
    assert not sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    # An Approved version trained for other classes is not comparable: no job either.
    registered = register(context(dag_id, run_id="manual__2026-11-26T06:00:00+00:00"))
    sm.update_model_package(ModelPackageArn=registered["arn"], ModelApprovalStatus="Approved")
    other = context(dag_id, classes=["cat", "dog"])
    result = operator.execute(other)
    assert result["map"] is None and "trained for classes ['blue_box', 'yellow_box']" in result["reason"]


def test_the_gate_also_follows_the_report_on_both_branches(dag_id) -> None:
    operator = GateOperator(
        task_id="gate",
        candidate=candidate(0.5),
        current={"map": 0.9},
        approve_task_id="approve_model",
        reject_task_id="reject_model",
        also_follow=("evaluation_report",),
    )
    assert operator.choose_branch(context(dag_id)) == ["reject_model", "evaluation_report"]
    operator.current = {"map": None}
    assert operator.choose_branch(context(dag_id)) == ["approve_model", "evaluation_report"]


def test_the_trigger_fires_timeout_at_its_deadline_not_a_poll_later(aws_conn, dag_id, capsys) -> None:
    """Still pending at the deadline: a ``timeout`` event, on time even with a long poll interval."""
    registered = register(context(dag_id, require_approval=True))
    trigger = ModelApprovalTrigger(
        registered["arn"], poll_seconds=600, aws_conn_id=aws_conn, region_name="us-east-1",
        deadline=time.time() + 2,
    )  # fmt: skip

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    started = time.monotonic()
    payload = asyncio.run(asyncio.wait_for(first_event(), timeout=30))
    assert payload["status"] == "timeout" and payload["arn"] == registered["arn"]
    assert time.monotonic() - started < 20
    assert "still PendingManualApproval at its deadline" in capsys.readouterr().out
