"""The MWAA execution role may use this environment's model registry, and only the project's groups.

The registry tasks run against the emulator on the pipeline's connection; their calls are recorded
(added to the session's ``pipeline_calls``, which tests/iam/test_policies.py checks) and each one is
evaluated, with the ARNs it touched, by the emulator's IAM policy evaluation (moto's ``IAMPolicy``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

from deeplens_pipeline import registry
from deeplens_pipeline.operators.registry import ApproveModelOperator, RegisterModelOperator
from deeplens_pipeline.params import validate_params
from emulator.aws_calls import allowed, iam_actions, record_calls
from emulator.extension.role_permissions import documents_allow

IAM_DIR = Path(__file__).resolve().parents[2] / "iam"
MWAA_POLICIES = ("mwaa-execution-role.json", "mwaa-execution-role-greengrass-v2.json")
REGISTRY_ACTIONS = {
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:ListModelPackages",
    "sagemaker:CreateModelPackage",
    "sagemaker:DescribeModelPackage",
    "sagemaker:UpdateModelPackage",
}


def _documents() -> list[dict]:
    return [json.loads((IAM_DIR / name).read_text()) for name in MWAA_POLICIES]


class _TI:
    def xcom_push(self, key: str, value: object) -> None:
        pass


def test_the_registry_tasks_calls_are_granted_on_the_projects_groups_only(aws_conn, pipeline_calls) -> None:
    dag_id = f"deeplens_grants_{uuid.uuid4().hex[:8]}"
    params = validate_params({"bucket": "deeplens-grants", "classes": ["a", "b"], "poll_seconds": 1})
    ctx = {"run_id": "manual__1", "dag_run": SimpleNamespace(dag_id=dag_id), "params": params, "ti": _TI()}
    candidate = {
        "map": 0.4,
        "per_class": {},
        "model_artifact": "s3://deeplens-grants/output/model.tar.gz",
        "metrics_uri": "s3://deeplens-grants/evaluation/run/candidate.json",
    }
    with record_calls(access_key="deeplens-pipeline") as recorder:
        registered = RegisterModelOperator(task_id="register_model", candidate=candidate, model={}).execute(
            ctx
        )
        ApproveModelOperator(task_id="approve_model", registered=registered).execute(ctx)
    pipeline_calls.calls.update(recorder.calls)  # tests/iam/test_policies.py: granted, none unused
    assert iam_actions(recorder.calls) == REGISTRY_ACTIONS

    documents = _documents()
    group_arn = registered["arn"].replace(":model-package/", ":model-package-group/").rsplit("/", 1)[0]
    assert group_arn.endswith(f"model-package-group/{registry.group_name('tests', dag_id)}")
    on = {
        "sagemaker:DescribeModelPackageGroup": group_arn,
        "sagemaker:CreateModelPackageGroup": group_arn,
        "sagemaker:CreateModelPackage": registered["arn"],
        "sagemaker:DescribeModelPackage": registered["arn"],
        "sagemaker:UpdateModelPackage": registered["arn"],
        "sagemaker:ListModelPackages": "*",  # a List action names no resource
    }
    for action, resource in on.items():
        assert documents_allow(documents, action, resource), (action, resource)
    # Another team's registry, and what the pipeline never does, are refused.
    other = group_arn.replace("deeplens-models-", "fraud-models-")
    assert not documents_allow(documents, "sagemaker:UpdateModelPackage", f"{other.replace('-group', '')}/1")
    assert not documents_allow(documents, "sagemaker:CreateModelPackageGroup", other)
    policy = {"Statement": [s for d in documents for s in d["Statement"]]}
    for action in ("sagemaker:DeleteModelPackage", "sagemaker:DeleteModelPackageGroup"):
        assert not allowed(policy, action)
