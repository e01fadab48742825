"""The labelling operator against the emulator: create once, defer, re-attach, merge, skip."""

import io
import json
import time
from types import SimpleNamespace

import boto3
import pytest
from PIL import Image

from deeplens_pipeline.airflow_compat import TaskDeferred
from deeplens_pipeline.naming import labeling_job_name
from deeplens_pipeline.operators.base import run_scope
from deeplens_pipeline.operators.labeling import LabelImagesOperator

BUCKET = "deeplens-label-op"


@pytest.fixture
def setup(emulator, aws_conn, tmp_path):
    from emulator.seed import seed_demo_account

    account = seed_demo_account(emulator.url, bucket=BUCKET)
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]:
        s3.delete_object(Bucket=BUCKET, Key=key)
    answer = tmp_path / "answer_key.json"
    answer.write_text(
        json.dumps(
            {
                "classes": ["box"],
                "images": {
                    f"p{i}.png": {
                        "width": 100,
                        "height": 100,
                        "objects": [{"label": "box", "left": 10, "top": 10, "width": 30, "height": 30}],
                    }
                    for i in range(3)
                },
            }
        )
    )
    emulator.settings.answer_keys = (answer,)
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "JPEG")
    transform = json.dumps({"scale": 1, "dx": 0, "dy": 0, "size": 100})
    for i in range(3):
        s3.put_object(
            Bucket=BUCKET,
            Key=f"input/p{i}.jpg",
            Body=buf.getvalue(),
            Metadata={"deeplens-source": f"p{i}.png", "deeplens-transform": transform},
        )
    params = {
        "labeling_backend": "ground-truth",
        "bucket": BUCKET,
        "classes": ["box"],
        "role_arn": account.role_arn,
        "workteam_arn": account.workteam_arn,
        "poll_seconds": 1,
        "labeling_timeout_days": 0.01,
    }
    return {
        "s3": s3,
        "params": params,
        "sm": boto3.client("sagemaker", endpoint_url=emulator.url, region_name="us-east-1"),
    }


def _context(params, run_id):
    return {
        "params": params,
        "run_id": run_id,
        "dag_run": SimpleNamespace(dag_id="deeplens_object_detection"),
    }


def _wait(sm, name):
    for _ in range(200):
        if sm.describe_labeling_job(LabelingJobName=name)["LabelingJobStatus"] == "Completed":
            return
        time.sleep(0.1)
    raise AssertionError("job did not complete")


@pytest.fixture
def slow_workers(emulator):
    """Workers that take a few seconds, so a retry surely finds the job still in progress."""
    emulator.settings.labeling_delay_seconds = 3
    yield
    emulator.settings.labeling_delay_seconds = 1.0


def test_create_defer_reattach_merge_then_skip(setup, slow_workers):
    op = LabelImagesOperator(task_id="label_images")
    ctx = _context(setup["params"], "manual__2026-11-24T05:00:00+00:00")
    name = labeling_job_name(run_scope(ctx))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    assert trigger.waiter_name == "LabelingJobComplete" and trigger.waiter_delay == 1
    job = setup["sm"].describe_labeling_job(LabelingJobName=name)
    assert job["LabelAttributeName"] == "bounding-box"
    manifest = (
        setup["s3"].get_object(Bucket=BUCKET, Key=f"manifests/labeling/{name}/input.manifest")["Body"].read()
    )
    assert manifest.decode().count("source-ref") == 3
    template = setup["s3"].get_object(Bucket=BUCKET, Key="labeling/bounding-box.liquid.html")["Body"].read()
    assert b"{{ task.input.taskObject | grant_read_access }}" in template

    # A retry while the job runs re-attaches: no second job.
    with pytest.raises(TaskDeferred):
        LabelImagesOperator(task_id="label_images").execute(ctx)
    jobs = setup["sm"].list_labeling_jobs(NameContains=name)["LabelingJobSummaryList"]
    assert len(jobs) == 1

    _wait(setup["sm"], name)
    result = op.execute_complete(ctx, {"status": "success", "job_name": name})
    assert result["job_name"] == name
    assert result["job"] == {"images": 3, "empty": 0, "boxes": {"box": 3}}
    assert result["total"]["images"] == 3
    labels = setup["s3"].get_object(Bucket=BUCKET, Key="manifests/labels.manifest")["Body"].read().decode()
    assert len(labels.splitlines()) == 3

    # A retry after completion returns the same result without a new job.
    assert LabelImagesOperator(task_id="label_images").execute(ctx)["job_name"] == name

    # The next run finds nothing unlabelled: no job at all.
    second = LabelImagesOperator(task_id="label_images").execute(
        _context(setup["params"], "manual__2026-11-25T05:00:00+00:00")
    )
    assert second["job_name"] is None and second["total"]["images"] == 3


def test_failed_job_fails_the_task_with_its_reason(setup, slow_workers):
    from deeplens_pipeline.airflow_compat import AirflowException

    ctx = _context(setup["params"], "manual__2026-11-26T05:00:00+00:00")
    name = labeling_job_name(run_scope(ctx))
    with pytest.raises(TaskDeferred):
        LabelImagesOperator(task_id="label_images").execute(ctx)
    setup["sm"].stop_labeling_job(LabelingJobName=name)
    for _ in range(100):
        if setup["sm"].describe_labeling_job(LabelingJobName=name)["LabelingJobStatus"] == "Stopped":
            break
        time.sleep(0.1)
    with pytest.raises(AirflowException, match="Stopped"):
        LabelImagesOperator(task_id="label_images").execute_complete(ctx, {"status": "error"})
    with pytest.raises(AirflowException, match="Trigger a new DAG run"):
        LabelImagesOperator(task_id="label_images").execute(ctx)


def test_images_that_came_with_boxes_skip_labelling(setup):
    from deeplens_pipeline.groundtruth import LabelledImage

    pre = LabelledImage(
        f"s3://{BUCKET}/input/p0.jpg",
        100,
        100,
        3,
        [{"class_id": 0, "left": 1, "top": 2, "width": 30, "height": 40}],
    )
    setup["s3"].put_object(
        Bucket=BUCKET,
        Key="manifests/prelabelled.manifest",
        Body=pre.to_line("bounding-box", ["box"]).encode(),
    )
    ctx = _context(setup["params"], "manual__2026-11-27T05:00:00+00:00")
    name = labeling_job_name(run_scope(ctx))
    with pytest.raises(TaskDeferred):
        LabelImagesOperator(task_id="label_images").execute(ctx)
    manifest = setup["s3"].get_object(Bucket=BUCKET, Key=f"manifests/labeling/{name}/input.manifest")["Body"]
    refs = [json.loads(line)["source-ref"] for line in manifest.read().decode().splitlines()]
    assert refs == [f"s3://{BUCKET}/input/p1.jpg", f"s3://{BUCKET}/input/p2.jpg"]
    _wait(setup["sm"], name)
    result = LabelImagesOperator(task_id="label_images").execute_complete(
        ctx, {"status": "success", "job_name": name}
    )
    assert result["total"]["images"] == 3
    labels = setup["s3"].get_object(Bucket=BUCKET, Key="manifests/labels.manifest")["Body"].read().decode()
    assert '"left":1,"top":2' in labels  # the box that came with the photo, kept


def test_the_bucket_gets_the_cors_rule_workers_need_and_keeps_its_own(setup):
    """Ground Truth's tasks fail without CORS on the images' bucket; the bucket's own rules stay."""
    theirs = {
        "AllowedMethods": ["PUT"],
        "AllowedOrigins": ["https://uploads.example.com"],
        "MaxAgeSeconds": 60,
    }
    setup["s3"].put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [theirs]})
    ctx = _context(setup["params"], "manual__2026-11-28T05:00:00+00:00")
    with pytest.raises(TaskDeferred):
        LabelImagesOperator(task_id="label_images").execute(ctx)
    rules = setup["s3"].get_bucket_cors(Bucket=BUCKET)["CORSRules"]
    assert len(rules) == 2
    assert rules[0]["AllowedOrigins"] == theirs["AllowedOrigins"] and rules[0]["MaxAgeSeconds"] == 60
    assert rules[1]["AllowedMethods"] == ["GET"] and rules[1]["AllowedOrigins"] == ["*"]
    name = labeling_job_name(run_scope(ctx))
    _wait(setup["sm"], name)  # the emulator's workforce, which checks CORS, completes the job


def test_a_first_run_on_an_account_that_answers_validation_exception_creates_its_job(setup):
    """Real SageMaker answers DescribeLabelingJob on an unknown name with ValidationException."""
    sm = setup["sm"]
    with pytest.raises(sm.exceptions.ClientError) as err:
        sm.describe_labeling_job(LabelingJobName="deeplens-label-never-created")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    ctx = _context(setup["params"], "manual__2026-11-29T05:00:00+00:00")
    with pytest.raises(TaskDeferred):
        LabelImagesOperator(task_id="label_images").execute(ctx)
    assert sm.describe_labeling_job(LabelingJobName=labeling_job_name(run_scope(ctx)))


def test_with_no_backend_only_boxes_that_came_with_the_photos_count_and_the_rest_is_reported(setup):
    from deeplens_pipeline.groundtruth import LabelledImage

    pre = LabelledImage(
        f"s3://{BUCKET}/input/p0.jpg",
        100,
        100,
        3,
        [{"class_id": 0, **dict.fromkeys(("left", "top", "width", "height"), 5)}],
    )
    setup["s3"].put_object(
        Bucket=BUCKET,
        Key="manifests/prelabelled.manifest",
        Body=pre.to_line("bounding-box", ["box"]).encode(),
    )
    params = {**setup["params"], "labeling_backend": "none"}
    result = LabelImagesOperator(task_id="label_images").execute(
        _context(params, "manual__2026-11-30T05:00:00+00:00")
    )
    assert result["backend"] == "none" and result["job_name"] is None
    assert result["total"]["images"] == 1
    assert result["left_out"] == {
        "no boxes and labeling_backend is 'none'": [
            f"s3://{BUCKET}/input/p1.jpg",
            f"s3://{BUCKET}/input/p2.jpg",
        ]
    }
    sm = setup["sm"]
    assert not [
        j for j in sm.list_labeling_jobs()["LabelingJobSummaryList"] if "11300500" in j["LabelingJobName"]
    ]


def test_a_replaced_photo_goes_back_to_labelling_and_its_old_boxes_to_the_history(setup):
    from deeplens_pipeline.groundtruth import LabelledImage

    box = [{"class_id": 0, "left": 1, "top": 1, "width": 9, "height": 9}]
    old = [
        LabelledImage(f"s3://{BUCKET}/input/p{i}.jpg", 100, 100, 3, box, digest=d)
        for i, d in ((0, "A"), (1, "B"))
    ]
    body = "".join(x.to_line("bounding-box", ["box"]) + "\n" for x in old)
    setup["s3"].put_object(Bucket=BUCKET, Key="manifests/labels.manifest", Body=body.encode())
    images = {
        "images": [{"key": f"input/p{i}.jpg", "sha256": d} for i, d in ((0, "A"), (1, "B-rotated"), (2, "C"))]
    }
    params = {**setup["params"], "labeling_backend": "none"}
    op = LabelImagesOperator(task_id="label_images", images=images)
    result = op.execute(_context(params, "manual__2026-12-01T05:00:00+00:00"))
    assert result["total"]["images"] == 1  # only p0's boxes still match their pixels
    assert result["left_out"]["no boxes and labeling_backend is 'none'"] == [
        f"s3://{BUCKET}/input/p1.jpg",
        f"s3://{BUCKET}/input/p2.jpg",
    ]
    history = setup["s3"].get_object(Bucket=BUCKET, Key="manifests/labels-history.manifest")["Body"].read()
    record = json.loads(history.decode().splitlines()[0])
    assert record["source-ref"].endswith("/p1.jpg") and "replaced" in record["deeplens-withdrawn"]["reason"]
    labels = setup["s3"].get_object(Bucket=BUCKET, Key="manifests/labels.manifest")["Body"].read().decode()
    assert [json.loads(line)["deeplens-source-sha256"] for line in labels.splitlines()] == ["A"]
