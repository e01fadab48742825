"""The evaluation task against the emulator: one model and one transform job per run, re-attached on retry."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import boto3
import pytest

from deeplens_pipeline.airflow_compat import AirflowFailException, TaskDeferred
from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.operators.base import run_scope
from deeplens_pipeline.operators.evaluation import EvaluateModelOperator, evaluation_name, metrics_key
from deeplens_pipeline.params import validate_params
from emulator.sample_dataset import generate_sample_dataset
from emulator.sample_model import ML_PYTHON, trained_sample_model
from tests.emulator.helpers import wait_for_job

BUCKET = "deeplens-eval-op"
DAG_ID = "deeplens_object_detection"
ARTIFACT = f"s3://{BUCKET}/output/sample/output/model.tar.gz"
HOLDOUT = f"s3://{BUCKET}/manifests/runs/x/validation.manifest"

pytestmark = pytest.mark.skipif(not ML_PYTHON.exists(), reason="the ML tools environment .venv-ml is missing")


@pytest.fixture(scope="module")
def staged(emulator, tmp_path_factory) -> dict:
    from emulator.seed import ensure_role

    sample = trained_sample_model()
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name="us-east-1")
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")  # the default params.role_arn
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(sample.archive), BUCKET, "output/sample/output/model.tar.gz")
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=4, seed=11)
    key = json.loads((root / "answer_key.json").read_text())
    classes = list(sample.classes)
    lines = []
    for name, entry in sorted(key["images"].items()):
        s3.upload_file(str(root / "images" / name), BUCKET, f"input/{name}")
        boxes = [
            {"class_id": classes.index(o["label"]), **{k: o[k] for k in ("left", "top", "width", "height")}}
            for o in entry["objects"]
        ]
        image = LabelledImage(f"s3://{BUCKET}/input/{name}", entry["width"], entry["height"], 3, boxes)
        lines.append(image.to_line("bounding-box", classes))
    _, manifest_key = HOLDOUT[5:].split("/", 1)
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body="\n".join(lines).encode())
    return {"s3": s3, "classes": classes, "images": len(lines), "url": emulator.url}


def _context(staged: dict, run_id: str) -> dict:
    params = {
        "bucket": BUCKET,
        "classes": staged["classes"],
        "label_attribute": "bounding-box",
        "poll_seconds": 1,
    }
    validate_params(params)
    return {"run_id": run_id, "dag_run": SimpleNamespace(dag_id=DAG_ID), "params": params}


def _operator(**kwargs) -> EvaluateModelOperator:
    return EvaluateModelOperator(
        task_id="evaluate_candidate",
        model_artifact=kwargs.pop("model_artifact", ARTIFACT),
        holdout_manifest=HOLDOUT,
        **kwargs,
    )


def test_evaluates_once_and_a_retry_reattaches(staged, aws_conn) -> None:
    run_id = "manual__2026-11-26T07:00:00+00:00"
    ctx = _context(staged, run_id)
    name = evaluation_name(run_scope(ctx), "candidate")
    assert len(name) <= 63 and name != evaluation_name(run_scope(ctx), "current")
    with pytest.raises(TaskDeferred) as deferred:
        _operator().execute(ctx)
    trigger = deferred.value.trigger
    assert (trigger.job_name, trigger.job_type) == (name, "Transform")
    # A retry while the job runs waits for the same job: no second model, no second job.
    with pytest.raises(TaskDeferred):
        _operator().execute(ctx)
    sm = boto3.client("sagemaker", endpoint_url=staged["url"], region_name="us-east-1")
    job = wait_for_job(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TransformInput"]["ContentType"] == "image/jpeg"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] == "ManifestFile"
    result = _operator().execute_complete(ctx, {"status": "success"})
    assert result["images"] == staged["images"]
    assert result["transform_job"] == name
    assert 0 < result["map"] <= 1  # the trained sample model finds boxes on its own kind of images
    assert set(result["per_class"]) <= set(staged["classes"])
    stored = json.loads(
        staged["s3"].get_object(Bucket=BUCKET, Key=metrics_key(run_id, "candidate"))["Body"].read()
    )
    assert stored["map"] == result["map"] and stored["metrics_uri"] == result["metrics_uri"]
    # A retry after it finished scores the same job again instead of starting another.
    again = _operator().execute(ctx)
    assert again["map"] == result["map"]
    jobs = sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    assert [j["TransformJobName"] for j in jobs] == [name]
    models = [
        m["ModelName"] for m in sm.list_models()["Models"] if m["ModelName"].startswith("deeplens-eval-")
    ]
    assert models.count(name) == 1 and not [m for m in models if m != name and m.endswith(name[-10:])]


def test_another_artefact_under_the_same_run_and_label_is_refused(staged, aws_conn) -> None:
    ctx = _context(staged, "manual__2026-11-26T08:00:00+00:00")
    with pytest.raises(TaskDeferred):
        _operator(model_label="current").execute(ctx)
    with pytest.raises(
        AirflowFailException, match="exists with .*model.tar.gz, not s3://deeplens-eval-op/other"
    ):
        _operator(model_label="current", model_artifact=f"s3://{BUCKET}/other/model.tar.gz").execute(ctx)


def test_a_failed_job_fails_the_task_with_its_reason(staged, aws_conn) -> None:
    ctx = _context(staged, "manual__2026-11-26T09:00:00+00:00")
    missing = f"s3://{BUCKET}/output/missing/model.tar.gz"
    with pytest.raises(TaskDeferred):
        _operator(model_artifact=missing).execute(ctx)
    sm = boto3.client("sagemaker", endpoint_url=staged["url"], region_name="us-east-1")
    name = evaluation_name(run_scope(ctx), "candidate")
    wait_for_job(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus")
    with pytest.raises(
        AirflowFailException,
        match=f"Transform job {name} is Failed: ClientError: Unable to download model data {missing}",
    ):
        _operator(model_artifact=missing).execute_complete(ctx, {"status": "failed"})


def test_killing_the_deferred_task_stops_its_transform_job(staged, aws_conn) -> None:
    ctx = _context(staged, "manual__2026-11-26T10:00:00+00:00")
    with pytest.raises(TaskDeferred) as deferred:
        _operator().execute(ctx)
    asyncio.run(deferred.value.trigger.on_kill())  # what Airflow calls when a user kills the task
    sm = boto3.client("sagemaker", endpoint_url=staged["url"], region_name="us-east-1")
    name = evaluation_name(run_scope(ctx), "candidate")
    job = wait_for_job(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus")
    assert job["TransformJobStatus"] == "Stopped"


def test_a_label_must_fit_a_job_name() -> None:
    with pytest.raises(ValueError, match="model_label must be"):
        _operator(model_label="Not A Label")


def test_the_current_model_is_the_registrys_newest_approved_version(staged, aws_conn) -> None:
    """evaluate_current scores the Approved version's artefact on the same holdout (a job of its own)."""
    from deeplens_pipeline import registry
    from deeplens_pipeline.operators.evaluation import EvaluateCurrentModelOperator
    from deeplens_pipeline.operators.registry import RegisterModelOperator

    dag_id = "deeplens_eval_current"
    earlier = _context(staged, "manual__2026-11-25T07:00:00+00:00")
    earlier["dag_run"] = SimpleNamespace(dag_id=dag_id)
    # Trained with another tag of the algorithm's image than this run names: served with its own.
    own_image = "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:latest"
    earlier["params"] = {**earlier["params"], "training_image": own_image}
    candidate = {
        "map": 0.3,
        "per_class": {},
        "model_artifact": ARTIFACT,
        "metrics_uri": f"s3://{BUCKET}/m.json",
    }
    registered = RegisterModelOperator(task_id="register_model", candidate=candidate, model={}).execute(
        earlier
    )
    sm = boto3.client("sagemaker", endpoint_url=staged["url"], region_name="us-east-1")
    sm.update_model_package(ModelPackageArn=registered["arn"], ModelApprovalStatus=registry.APPROVED)

    ctx = _context(staged, "manual__2026-11-26T11:00:00+00:00")
    ctx["dag_run"] = SimpleNamespace(dag_id=dag_id)
    operator = EvaluateCurrentModelOperator(task_id="evaluate_current", holdout_manifest=HOLDOUT)
    with pytest.raises(TaskDeferred):
        operator.execute(ctx)
    name = evaluation_name(run_scope(ctx), "current")
    assert sm.describe_model(ModelName=name)["PrimaryContainer"]["Image"] == own_image
    job = wait_for_job(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    # The task resumes in a fresh operator (as after the triggerer): the artefact comes from its model.
    resumed = EvaluateCurrentModelOperator(task_id="evaluate_current", holdout_manifest=HOLDOUT)
    result = resumed.execute_complete(ctx, {"status": "success"})
    assert result["label"] == "current" and result["model_artifact"] == ARTIFACT
    assert result["version_arn"] == registered["arn"] and result["version"] == registered["version"]
    assert 0 < result["map"] <= 1 and result["images"] == staged["images"]
    assert result["holdout_manifest"] == HOLDOUT
