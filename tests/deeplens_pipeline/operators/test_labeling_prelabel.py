"""Pre-drawn boxes: with a current model in the registry, new Label Studio tasks arrive with its boxes.

A real Label Studio server, the emulator (its batch transform runs the trained sample model in the
ML tools environment) and the simulated annotator, who corrects the pre-drawn boxes from the
sample dataset's answer key.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import boto3
import pytest

from deeplens_pipeline import label_studio as ls
from deeplens_pipeline.airflow_compat import TaskDeferred
from deeplens_pipeline.evaluation import parse_prediction, prediction_uri
from deeplens_pipeline.images.preprocess import PreprocessOptions, preprocess_file
from deeplens_pipeline.operators.base import run_scope
from deeplens_pipeline.operators.labeling import LabelImagesOperator
from deeplens_pipeline.operators.labeling_backends import prelabel_name
from deeplens_pipeline.registry import encode_classes, group_name
from deeplens_pipeline.summary import build_summary, format_summary
from deeplens_pipeline.training import object_detection_image
from deeplens_pipeline.triggers.label_studio import LabelStudioTasksTrigger
from deeplens_pipeline.triggers.sagemaker import SageMakerJobTrigger
from emulator.extension.groundtruth import load_answer_keys, map_box
from emulator.label_studio_annotator import KEEP_IOU, annotate_pending
from emulator.sample_dataset import generate_sample_dataset
from emulator.sample_model import ML_PYTHON, trained_sample_model
from tests.emulator.helpers import wait_for_job

CONN_ID = "label_studio_prelabel"
REGION = "us-east-1"
BUCKET = "deeplens-ls-prelabel"
SIZE = 256
THRESHOLD = 0.3

pytestmark = pytest.mark.skipif(not ML_PYTHON.exists(), reason="the ML tools environment .venv-ml is missing")


def _context(params: dict, run_id: str, dag_id: str) -> dict:
    return {"params": params, "run_id": run_id, "dag_run": SimpleNamespace(dag_id=dag_id)}


@pytest.fixture(scope="module")
def dataset(emulator, tmp_path_factory) -> SimpleNamespace:
    """Six sample photos made square as the images stage does (with its S3 metadata), and the model."""
    from emulator.seed import ensure_role

    sample = trained_sample_model()
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name=REGION)
    ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")  # the default params.role_arn
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(sample.archive), BUCKET, "models/current/model.tar.gz")
    root = generate_sample_dataset(tmp_path_factory.mktemp("prelabel-ds"), n_images=6, seed=11)
    out = tmp_path_factory.mktemp("prelabel-prepared")
    transforms = {}
    for path in sorted((root / "images").iterdir()):
        outcome = preprocess_file(path, out / path.name, PreprocessOptions(size=SIZE))
        assert outcome["status"] == "ok", outcome
        transforms[path.name] = outcome["transform"]
    return SimpleNamespace(
        s3=s3,
        root=root,
        prepared=out,
        transforms=transforms,
        answers=load_answer_keys((root / "answer_key.json",)),
        classes=list(sample.classes),
        artifact=f"s3://{BUCKET}/models/current/model.tar.gz",
    )


def _stage(dataset, prefix: str) -> list[str]:
    for name, transform in dataset.transforms.items():
        dataset.s3.upload_file(
            str(dataset.prepared / name),
            BUCKET,
            f"{prefix}{name}",
            ExtraArgs={
                "ContentType": "image/jpeg",
                "Metadata": {"deeplens-source": name, "deeplens-transform": json.dumps(transform)},
            },
        )
    return [f"s3://{BUCKET}/{prefix}{name}" for name in sorted(dataset.transforms)]


def _register(emulator, environment: str, dag_id: str, artifact: str, classes: list[str]) -> dict:
    """An Approved version of the environment's model package group: the current model."""
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)
    group = group_name(environment, dag_id)
    sm.create_model_package_group(ModelPackageGroupName=group)
    arn = sm.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [{"Image": object_detection_image(REGION), "ModelDataUrl": artifact}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties=encode_classes(classes),
    )["ModelPackageArn"]
    return sm.describe_model_package(ModelPackageName=arn)


@pytest.fixture
def connection(label_studio, emulator, monkeypatch) -> SimpleNamespace:
    extra = {"s3_endpoint": emulator.url, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {"conn_type": "http", "host": label_studio.url, "password": label_studio.token, "extra": extra}
        ),
    )
    return SimpleNamespace(client=label_studio.client())


def _params(dataset, prefix: str) -> dict:
    return {
        "bucket": BUCKET,
        "input_prefix": prefix,
        "classes": dataset.classes,
        "poll_seconds": 1,
        "labeling_timeout_days": 0.01,
    }


def _op(**kwargs) -> LabelImagesOperator:
    return LabelImagesOperator(task_id="label_images", label_studio_conn_id=CONN_ID, **kwargs)


def _tasks(client, project_id: int) -> list[dict]:
    return [t.model_dump() for t in client.tasks.list(project=project_id, fields="all", resolve_uri=False)]


def _run_trigger(trigger, limit: float = 60):
    async def first():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(first(), limit))


def _box(item: dict) -> tuple[float, float, float, float]:
    v = item["value"]
    return v["x"], v["y"], v["x"] + v["width"], v["y"] + v["height"]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _good_boxes(dataset, image: str, predicted: list[dict]) -> int:
    """How many pre-drawn boxes match an answer of their class (IoU ≥ KEEP_IOU), one answer each."""
    name = image.rsplit("/", 1)[1]
    answers = []
    for obj in dataset.answers[name]["objects"]:
        box = map_box(obj, dataset.transforms[name])
        if box is not None:
            p = [100 * v / SIZE for v in (box["left"], box["top"], box["width"], box["height"])]
            answers.append((obj["label"], (p[0], p[1], p[0] + p[2], p[1] + p[3])))
    good = 0
    for item in sorted(predicted, key=lambda i: -i["score"]):
        overlaps = [(_iou(_box(item), box), k) for k, (label, box) in enumerate(answers)]
        best, k = max(overlaps, default=(0.0, -1))
        if k >= 0 and best >= KEEP_IOU and answers[k][0] == item["value"]["rectanglelabels"][0]:
            good += 1
            answers.pop(k)
    return good


def test_new_tasks_arrive_with_the_current_model_boxes_and_the_kept_count_is_reported(
    dataset, connection, emulator, aws_conn
) -> None:
    dag_id, run_id = "deeplens_prelabel_test", "manual__2026-11-26T11:00:00+00:00"
    prefix = "input-prelabel/"
    images = _stage(dataset, prefix)
    version = _register(emulator, "tests", dag_id, dataset.artifact, dataset.classes)
    ctx = _context(_params(dataset, prefix), run_id, dag_id)
    name = prelabel_name(run_scope(ctx))

    # First the transform job over the new images (paid work: one per run), waited for in the triggerer.
    with pytest.raises(TaskDeferred) as deferred:
        _op(prelabel_threshold=THRESHOLD).execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerJobTrigger)
    assert (trigger.job_name, trigger.job_type) == (name, "Transform")
    assert deferred.value.method_name == "execute_after_prelabel"
    project = next(
        p
        for p in connection.client.projects.list()
        if p.title == ls.project_title("tests", dag_id, BUCKET, prefix)
    )
    assert _tasks(connection.client, project.id) == []  # tasks are imported once, with their boxes
    # A retry re-attaches to the same job: it waits for it again, or (when the emulator has already
    # finished it) goes on with its boxes; either way there is one job.
    with pytest.raises(TaskDeferred) as again:
        _op(prelabel_threshold=THRESHOLD).execute(ctx)
    retried_past_the_job = not isinstance(again.value.trigger, SageMakerJobTrigger)
    if not retried_past_the_job:
        assert again.value.trigger.job_name == name
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)
    job = wait_for_job(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus", 300)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert [
        j["TransformJobName"] for j in sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    ] == [name]
    assert sm.describe_model(ModelName=name)["PrimaryContainer"]["ModelDataUrl"] == dataset.artifact

    # Then the tasks, with the boxes scoring at least the threshold, by class name.
    with pytest.raises(TaskDeferred) as waiting:
        _op(prelabel_threshold=THRESHOLD).execute_after_prelabel(ctx, {"status": "success"})
    tasks_trigger = waiting.value.trigger
    assert isinstance(tasks_trigger, LabelStudioTasksTrigger) and tasks_trigger.project_id == project.id
    tasks = {ls.task_image(t): t for t in _tasks(connection.client, project.id)}
    assert sorted(tasks) == images
    output = job["TransformOutput"]["S3OutputPath"]
    predicted_total = good_total = 0
    for image, task in tasks.items():
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == str(version["ModelPackageVersion"])
        bucket, key = prediction_uri(image, output)[5:].split("/", 1)
        detections = parse_prediction(
            dataset.s3.get_object(Bucket=bucket, Key=key)["Body"].read(), len(dataset.classes)
        )
        wanted = [d for d in detections if d.score >= THRESHOLD]
        result = prediction["result"]
        assert len(result) == len(wanted)
        for item, detection in zip(result, sorted(wanted, key=lambda d: -d.score), strict=True):
            assert item["value"]["rectanglelabels"] == [dataset.classes[detection.class_id]]
            assert item["value"]["x"] == pytest.approx(100 * max(0.0, detection.box[0]), abs=1e-3)
            assert item["score"] == pytest.approx(detection.score, abs=1e-5)
        predicted_total += len(result)
        good_total += _good_boxes(dataset, image, result)
    assert predicted_total > 0 and good_total > 0  # the trained model draws boxes worth keeping
    # Label Studio shows annotators only the predictions of the project's model version.
    assert connection.client.projects.get(id=project.id).model_version == str(version["ModelPackageVersion"])
    some = next(t for t in tasks.values() if t["predictions"][0]["result"])
    shown = connection.client.tasks.get(id=some["id"])  # what the labelling page loads
    assert [p.result for p in shown.predictions] == [some["predictions"][0]["result"]]

    # The annotator corrects them; the run reports what was kept.
    done = annotate_pending(connection.client, None, project.id, dataset.s3, dataset.answers, 0)
    assert done == len(images)
    event = _run_trigger(tasks_trigger)
    assert event["status"] == "success"
    result = _op(prelabel_threshold=THRESHOLD).execute_complete(ctx, event)
    review = result["prelabel"]
    assert review["model_versions"] == [str(version["ModelPackageVersion"])]
    assert review["tasks"] == len(images) and review["predicted_boxes"] == predicted_total
    assert review["kept"] == good_total
    assert review["kept"] + review["changed"] + review["deleted"] == predicted_total
    labelled = sum(len(answer["objects"]) for answer in dataset.answers.values())
    assert result["job"]["images"] == len(images)
    boxes = sum(result["job"]["boxes"].values())
    assert review["kept"] + review["changed"] + review["added"] == boxes <= labelled
    # The run's summary says it.
    line = format_summary(build_summary({"labeling": result}))
    assert "Pre-drawn boxes (current model)" in line
    assert f": {good_total} of {predicted_total} kept unchanged, " in line


def test_without_a_current_model_tasks_come_without_boxes_and_no_job_is_paid_for(
    dataset, connection, emulator, aws_conn
) -> None:
    dag_id, run_id = "deeplens_prelabel_none", "manual__2026-11-26T12:00:00+00:00"
    prefix = "input-prelabel-none/"
    images = _stage(dataset, prefix)
    ctx = _context(_params(dataset, prefix), run_id, dag_id)
    with pytest.raises(TaskDeferred) as deferred:
        _op().execute(ctx)
    assert isinstance(deferred.value.trigger, LabelStudioTasksTrigger)
    tasks = _tasks(connection.client, deferred.value.trigger.project_id)
    assert sorted(ls.task_image(t) for t in tasks) == images
    assert all(not t["predictions"] for t in tasks)
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)
    name = prelabel_name(run_scope(ctx))
    assert sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"] == []


def test_a_failed_transform_job_sends_the_images_without_boxes(
    dataset, connection, emulator, aws_conn
) -> None:
    """Pre-drawn boxes save time; their absence costs no label: the tasks are imported without them."""
    dag_id, run_id = "deeplens_prelabel_failed", "manual__2026-11-26T13:00:00+00:00"
    prefix = "input-prelabel-failed/"
    images = _stage(dataset, prefix)
    missing = f"s3://{BUCKET}/models/missing/model.tar.gz"
    _register(emulator, "tests", dag_id, missing, dataset.classes)
    ctx = _context(_params(dataset, prefix), run_id, dag_id)
    with pytest.raises(TaskDeferred) as deferred:
        _op().execute(ctx)
    name = deferred.value.trigger.job_name
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)
    job = wait_for_job(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus")
    assert job["TransformJobStatus"] == "Failed"
    with pytest.raises(TaskDeferred) as waiting:
        _op().execute_after_prelabel(ctx, {"status": "error"})
    tasks = _tasks(connection.client, waiting.value.trigger.project_id)
    assert sorted(ls.task_image(t) for t in tasks) == images
    assert all(not t["predictions"] for t in tasks)


def test_the_next_run_pre_labels_with_the_newer_version_and_the_project_shows_it(
    dataset, connection, emulator, aws_conn
) -> None:
    """Label Studio shows only its project's model version: a newer approved version takes over."""
    dag_id, prefix = "deeplens_prelabel_versions", "input-prelabel-versions/"
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name=REGION)
    first = _register(emulator, "tests", dag_id, dataset.artifact, dataset.classes)
    shown = []
    for number, run_id in enumerate(
        ("manual__2026-11-26T14:00:00+00:00", "manual__2026-11-26T15:00:00+00:00")
    ):
        if number:  # a newer version is approved between the runs, and a new photo arrives
            group = group_name("tests", dag_id)
            arn = sm.create_model_package(
                ModelPackageGroupName=group,
                InferenceSpecification=first["InferenceSpecification"],
                ModelApprovalStatus="Approved",
                CustomerMetadataProperties=encode_classes(dataset.classes),
            )["ModelPackageArn"]
            assert sm.describe_model_package(ModelPackageName=arn)["ModelPackageVersion"] == 2
        name = sorted(dataset.transforms)[number]
        dataset.s3.upload_file(
            str(dataset.prepared / name),
            BUCKET,
            f"{prefix}run{number}-{name}",
            ExtraArgs={"Metadata": {"deeplens-source": name}},
        )
        ctx = _context(_params(dataset, prefix), run_id, dag_id)
        with pytest.raises(TaskDeferred) as deferred:
            _op(prelabel_threshold=THRESHOLD).execute(ctx)
        job = deferred.value.trigger.job_name
        wait_for_job(
            lambda job=job: sm.describe_transform_job(TransformJobName=job), "TransformJobStatus", 300
        )
        with pytest.raises(TaskDeferred) as waiting:
            _op(prelabel_threshold=THRESHOLD).execute_after_prelabel(ctx, {"status": "success"})
        project_id = waiting.value.trigger.project_id
        tasks = {ls.task_image(t): t for t in _tasks(connection.client, project_id)}
        new = tasks[f"s3://{BUCKET}/{prefix}run{number}-{name}"]
        assert [p["model_version"] for p in new["predictions"]] == [str(number + 1)]
        shown.append(connection.client.projects.get(id=project_id).model_version)
    assert shown == ["1", "2"]
