"""Batch transform jobs in the emulator run the trained model on every input image (ML tools env)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from deeplens_pipeline.evaluation import iou, parse_prediction
from deeplens_pipeline.training import object_detection_image
from emulator.sample_dataset import generate_sample_dataset
from emulator.sample_model import ML_PYTHON, trained_sample_model
from emulator.seed import ensure_role
from tests.emulator.helpers import wait_for_job

BUCKET = "deeplens-transform-test"
MODEL = "deeplens-eval-sample"

pytestmark = pytest.mark.skipif(not ML_PYTHON.exists(), reason="the ML tools environment .venv-ml is missing")


@pytest.fixture(scope="module")
def staged(emulator, tmp_path_factory) -> dict:
    sample = trained_sample_model()
    region = "us-east-1"
    iam = boto3.client("iam", endpoint_url=emulator.url, region_name=region)
    role = ensure_role(iam, "deeplens-sagemaker", "sagemaker-execution-role")
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name=region)
    sm = boto3.client("sagemaker", endpoint_url=emulator.url, region_name=region)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(sample.archive), BUCKET, "output/sample/model.tar.gz")
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=4, seed=11)
    key = json.loads((root / "answer_key.json").read_text())
    for name in key["images"]:
        s3.upload_file(str(root / "images" / name), BUCKET, f"input/{name}")
    sm.create_model(
        ModelName=MODEL,
        ExecutionRoleArn=role,
        PrimaryContainer={
            "Image": object_detection_image(region),
            "ModelDataUrl": f"s3://{BUCKET}/output/sample/model.tar.gz",
        },
    )
    names = sorted(key["images"])
    manifest = [{"prefix": f"s3://{BUCKET}/"}, *(f"input/{n}" for n in names)]
    s3.put_object(Bucket=BUCKET, Key="eval/input.manifest", Body=json.dumps(manifest).encode())
    return {"s3": s3, "sm": sm, "key": key, "names": names, "classes": list(sample.classes)}


def _request(name: str, **changes) -> dict:
    request = {
        "TransformJobName": name,
        "ModelName": MODEL,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/eval/input.manifest"}
            },
            "ContentType": "image/jpeg",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/eval/{name}/"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = request
        for part in parents:
            target = target[part]
        target[leaf] = value
    return request


def test_a_transform_job_writes_one_prediction_per_image(staged) -> None:
    sm, s3, key = staged["sm"], staged["s3"], staged["key"]
    sm.create_transform_job(**_request("deeplens-eval-ok"))
    assert (
        sm.describe_transform_job(TransformJobName="deeplens-eval-ok")["TransformJobStatus"] == "InProgress"
    )
    job = wait_for_job(
        lambda: sm.describe_transform_job(TransformJobName="deeplens-eval-ok"), "TransformJobStatus"
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    hits = 0
    for name in staged["names"]:
        body = s3.get_object(Bucket=BUCKET, Key=f"eval/deeplens-eval-ok/input/{name}.out")["Body"].read()
        document = json.loads(body)
        assert list(document) == ["prediction"]
        rows = document["prediction"]
        assert rows and all(len(r) == 6 and 0 <= r[1] <= 1 for r in rows)
        assert all(-0.1 <= v <= 1.1 for r in rows for v in r[2:])  # normalised corners, not pixels
        detections = parse_prediction(body, len(staged["classes"]))
        best = max(detections, key=lambda d: d.score)
        entry = key["images"][name]
        w, h = entry["width"], entry["height"]
        truths = [
            (
                key["classes"].index(o["label"]),
                (o["left"] / w, o["top"] / h, (o["left"] + o["width"]) / w, (o["top"] + o["height"]) / h),
            )
            for o in entry["objects"]
        ]
        hits += any(c == best.class_id and iou(best.box, box) >= 0.5 for c, box in truths)
    assert hits >= len(staged["names"]) // 2, "the trained model's best box should find a labelled object"


def test_create_refuses_what_sagemaker_refuses(staged) -> None:
    sm = staged["sm"]
    with pytest.raises(ClientError) as missing:
        sm.create_transform_job(**_request("deeplens-eval-nomodel", ModelName="deeplens-no-such-model"))
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    assert 'Could not find model "arn:aws:sagemaker:us-east-1:' in str(missing.value)
    with pytest.raises(ClientError) as augmented:
        sm.create_transform_job(
            **_request(
                "deeplens-eval-aug",
                **{"TransformInput.DataSource.S3DataSource.S3DataType": "AugmentedManifestFile"},
            )
        )
    assert "not compatible" in str(augmented.value)
    with pytest.raises(ClientError) as empty:
        sm.create_transform_job(
            **_request(
                "deeplens-eval-empty",
                **{
                    "TransformInput.DataSource.S3DataSource.S3DataType": "S3Prefix",
                    "TransformInput.DataSource.S3DataSource.S3Uri": f"s3://{BUCKET}/nothing-here/",
                },
            )
        )
    assert "No S3 objects found under S3 URL" in str(empty.value)
    with pytest.raises(ClientError) as unknown:
        sm.stop_transform_job(TransformJobName="deeplens-eval-never")
    assert unknown.value.response["Error"]["Code"] == "ValidationException"


def test_a_name_is_used_once_and_a_stopped_job_stops(staged) -> None:
    sm = staged["sm"]
    sm.create_transform_job(**_request("deeplens-eval-stop"))
    sm.stop_transform_job(TransformJobName="deeplens-eval-stop")
    with pytest.raises(ClientError) as again:
        sm.create_transform_job(**_request("deeplens-eval-stop"))
    assert again.value.response["Error"]["Code"] == "ResourceInUse"
    job = wait_for_job(
        lambda: sm.describe_transform_job(TransformJobName="deeplens-eval-stop"), "TransformJobStatus"
    )
    assert job["TransformJobStatus"] == "Stopped"


def test_the_algorithm_fails_a_job_it_cannot_serve(staged, tmp_path: Path) -> None:
    sm, s3 = staged["sm"], staged["s3"]
    sm.create_transform_job(**_request("deeplens-eval-csv", **{"TransformInput.ContentType": "text/csv"}))
    job = wait_for_job(
        lambda: sm.describe_transform_job(TransformJobName="deeplens-eval-csv"), "TransformJobStatus"
    )
    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: 415")
    s3.put_object(Bucket=BUCKET, Key="broken/not-an-image.jpg", Body=b"not a jpeg")
    sm.create_transform_job(
        **_request(
            "deeplens-eval-broken",
            **{
                "TransformInput.DataSource.S3DataSource.S3DataType": "S3Prefix",
                "TransformInput.DataSource.S3DataSource.S3Uri": f"s3://{BUCKET}/broken/",
            },
        )
    )
    job = wait_for_job(
        lambda: sm.describe_transform_job(TransformJobName="deeplens-eval-broken"), "TransformJobStatus"
    )
    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: 400")
