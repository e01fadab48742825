import io
import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from deeplens_pipeline.groundtruth import LABELING_CORS_RULE
from emulator.extension.groundtruth import cors_allows_workers, map_box
from emulator.seed import ensure_role

REGION = "us-east-1"
ACS_LAMBDA = "arn:aws:lambda:us-east-1:432418664414:function:ACS-BoundingBox"


@pytest.fixture(scope="module")
def aws(emulator, tmp_path_factory):
    key = tmp_path_factory.mktemp("answers") / "answer_key.json"
    key.write_text(
        json.dumps(
            {
                "classes": ["cat", "dog"],
                "images": {
                    "photo.png": {
                        "width": 200,
                        "height": 100,
                        "objects": [
                            {"label": "dog", "left": 10, "top": 20, "width": 50, "height": 40},
                            {"label": "bird", "left": 0, "top": 0, "width": 5, "height": 5},
                        ],
                    }
                },
            }
        )
    )
    emulator.settings.answer_keys = (key,)
    clients = {s: boto3.client(s, endpoint_url=emulator.url, region_name=REGION) for s in ("s3", "sagemaker")}
    ensure_role(
        boto3.client("iam", endpoint_url=emulator.url, region_name=REGION), "r", "sagemaker-execution-role"
    )
    s3 = clients["s3"]
    s3.create_bucket(Bucket="deeplens-gt")
    s3.put_bucket_cors(Bucket="deeplens-gt", CORSConfiguration={"CORSRules": [LABELING_CORS_RULE]})
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "JPEG")
    transform = {"w": 200, "h": 100, "orientation": 1, "scale": 0.5, "dx": 0, "dy": 25, "size": 100}
    s3.put_object(
        Bucket="deeplens-gt",
        Key="input/photo.jpg",
        Body=buf.getvalue(),
        Metadata={"deeplens-source": "photos/photo.png", "deeplens-transform": json.dumps(transform)},
    )
    s3.put_object(Bucket="deeplens-gt", Key="input/unknown.jpg", Body=buf.getvalue())
    s3.put_object(
        Bucket="deeplens-gt",
        Key="m/in.manifest",
        Body=b'{"source-ref": "s3://deeplens-gt/input/photo.jpg"}\n'
        b'{"source-ref": "s3://deeplens-gt/input/unknown.jpg"}\n',
    )
    s3.put_object(
        Bucket="deeplens-gt",
        Key="m/labels.json",
        Body=json.dumps(
            {"document-version": "2018-11-28", "labels": [{"label": "cat"}, {"label": "dog"}]}
        ).encode(),
    )
    team = clients["sagemaker"].create_workteam(
        WorkteamName="gt-team",
        Description="d",
        MemberDefinitions=[{"CognitoMemberDefinition": {"UserPool": "p", "UserGroup": "g", "ClientId": "c"}}],
    )
    clients["workteam"] = team["WorkteamArn"]
    return clients


def request(aws, name, **extra):
    body = {
        "LabelingJobName": name,
        "LabelAttributeName": "bounding-box",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://deeplens-gt/m/in.manifest"}}},
        "OutputConfig": {"S3OutputPath": "s3://deeplens-gt/output/"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
        "LabelCategoryConfigS3Uri": "s3://deeplens-gt/m/labels.json",
        "HumanTaskConfig": {
            "WorkteamArn": aws["workteam"],
            "UiConfig": {"UiTemplateS3Uri": "s3://deeplens-gt/t.html"},
            "PreHumanTaskLambdaArn": "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox",
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 300,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": ACS_LAMBDA},
        },
    }
    body.update(extra)
    return body


def wait(sm, name, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sm.describe_labeling_job(LabelingJobName=name)
        if job["LabelingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish")


def test_job_labels_from_the_answer_key_through_the_transform(aws):
    sm = aws["sagemaker"]
    sm.create_labeling_job(**request(aws, "job-ok"))
    assert sm.describe_labeling_job(LabelingJobName="job-ok")["LabelingJobStatus"] == "InProgress"
    job = wait(sm, "job-ok")
    assert job["LabelingJobStatus"] == "Completed"
    assert job["LabelCounters"]["TotalLabeled"] == 2
    uri = job["LabelingJobOutput"]["OutputDatasetS3Uri"]
    assert uri == "s3://deeplens-gt/output/job-ok/manifests/output/output.manifest"
    lines = [
        json.loads(line)
        for line in aws["s3"]
        .get_object(Bucket="deeplens-gt", Key=uri.split("/", 3)[3])["Body"]
        .read()
        .decode()
        .splitlines()
    ]
    first, second = lines
    assert first["bounding-box"]["image_size"] == [{"width": 100, "height": 100, "depth": 3}]
    # dog at (10,20,50x40) in the source → scale 0.5, dy 25 → (5, 35, 25x20); 'bird' is not a class
    assert first["bounding-box"]["annotations"] == [
        {"class_id": 1, "left": 5, "top": 35, "width": 25, "height": 20}
    ]
    assert first["bounding-box-metadata"]["class-map"] == {"0": "cat", "1": "dog"}
    assert first["bounding-box-metadata"]["job-name"] == "labeling-job/job-ok"
    assert second["bounding-box"]["annotations"] == []
    names = [
        j["LabelingJobName"] for j in sm.list_labeling_jobs(NameContains="job-ok")["LabelingJobSummaryList"]
    ]
    assert names == ["job-ok"]


def test_duplicate_name_and_bad_attribute_are_refused(aws):
    sm = aws["sagemaker"]
    sm.create_labeling_job(**request(aws, "job-dup"))
    with pytest.raises(ClientError, match="ResourceInUse"):
        sm.create_labeling_job(**request(aws, "job-dup"))
    with pytest.raises(ClientError, match="must not end with"):
        sm.create_labeling_job(**request(aws, "job-attr", LabelAttributeName="x-ref"))
    with pytest.raises(ClientError, match="ResourceInUse"):  # names compare case-insensitively
        sm.create_labeling_job(**request(aws, "JOB-DUP"))
    # The real service answers an unknown labelling job with ValidationException, not ResourceNotFound.
    with pytest.raises(ClientError) as err:
        sm.describe_labeling_job(LabelingJobName="no-such-job")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "not found" in err.value.response["Error"]["Message"]


def test_unknown_workteam_is_refused(aws):
    body = request(aws, "job-team")
    body["HumanTaskConfig"]["WorkteamArn"] = (
        "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/nobody"
    )
    with pytest.raises(ClientError, match="does not exist"):
        aws["sagemaker"].create_labeling_job(**body)


def test_failure_on_request_and_missing_manifest(aws):
    sm = aws["sagemaker"]
    sm.create_labeling_job(
        **request(
            aws,
            "job-fail",
            Tags=[
                {"Key": "emulator:outcome", "Value": "Failed"},
                {"Key": "emulator:failure-reason", "Value": "workers quit"},
            ],
        )
    )
    job = wait(sm, "job-fail")
    assert (job["LabelingJobStatus"], job["FailureReason"]) == ("Failed", "workers quit")
    body = request(aws, "job-missing")
    body["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] = "s3://deeplens-gt/m/none.manifest"
    sm.create_labeling_job(**body)
    job = wait(sm, "job-missing")
    assert job["LabelingJobStatus"] == "Failed"
    assert "s3://deeplens-gt/m/none.manifest" in job["FailureReason"]


def test_stop(aws, emulator):
    sm = aws["sagemaker"]
    emulator.settings.labeling_delay_seconds = 5
    try:
        sm.create_labeling_job(**request(aws, "job-stop"))
        sm.stop_labeling_job(LabelingJobName="job-stop")
        job = wait(sm, "job-stop")
    finally:
        emulator.settings.labeling_delay_seconds = 1.0
    assert job["LabelingJobStatus"] == "Stopped"


def test_map_box_clips_and_drops():
    t = {"scale": 1.0, "dx": -50, "dy": 0, "size": 100}
    assert map_box({"left": 60, "top": 10, "width": 20, "height": 20}, t) == {
        "left": 10,
        "top": 10,
        "width": 20,
        "height": 20,
    }
    assert map_box({"left": 140, "top": 10, "width": 20, "height": 20}, t) == {
        "left": 90,
        "top": 10,
        "width": 10,
        "height": 20,
    }
    assert map_box({"left": 0, "top": 10, "width": 20, "height": 20}, t) is None


def test_a_job_whose_images_bucket_has_no_cors_rule_fails_with_the_reason(aws):
    s3, sm = aws["s3"], aws["sagemaker"]
    s3.create_bucket(Bucket="deeplens-gt-nocors")
    s3.copy_object(Bucket="deeplens-gt-nocors", Key="photo.jpg", CopySource="deeplens-gt/input/photo.jpg")
    s3.put_object(
        Bucket="deeplens-gt",
        Key="m/nocors.manifest",
        Body=b'{"source-ref": "s3://deeplens-gt-nocors/photo.jpg"}\n',
    )
    body = request(aws, "job-nocors")
    body["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] = "s3://deeplens-gt/m/nocors.manifest"
    sm.create_labeling_job(**body)
    job = wait(sm, "job-nocors")
    assert job["LabelingJobStatus"] == "Failed"
    assert "s3://deeplens-gt-nocors" in job["FailureReason"] and "CORS" in job["FailureReason"]


def test_cors_rules_as_s3_matches_origins():
    team = "https://team.labeling.us-east-1.sagemaker.aws"
    portal = [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://*.labeling.us-east-1.sagemaker.aws"]}]
    assert cors_allows_workers(portal, team)
    assert not cors_allows_workers(portal, "https://team.labeling.eu-west-1.sagemaker.aws")
    assert cors_allows_workers([{"AllowedMethods": ["GET"], "AllowedOrigins": [team]}], team)
    assert not cors_allows_workers(
        [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://other.example"]}], team
    )
    assert cors_allows_workers([LABELING_CORS_RULE], team)
    assert not cors_allows_workers([{"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]}], team)
    assert not cors_allows_workers([], team)


def test_public_crowd_needs_a_price_and_at_most_twelve_hours(aws):
    sm = aws["sagemaker"]
    body = request(aws, "job-public")
    public = "arn:aws:sagemaker:us-east-1:394669845002:workteam/public-crowd/default"
    body["HumanTaskConfig"]["WorkteamArn"] = public
    with pytest.raises(ClientError, match="PublicWorkforceTaskPrice is required"):
        sm.create_labeling_job(**body)
    price = {"AmountInUsd": {"Dollars": 0, "Cents": 3, "TenthFractionsOfACent": 6}}
    body["HumanTaskConfig"].update(PublicWorkforceTaskPrice=price, TaskAvailabilityLifetimeInSeconds=43201)
    with pytest.raises(ClientError, match="exceeds the maximum of 43200"):
        sm.create_labeling_job(**body)
    private = request(aws, "job-private-long")
    private["HumanTaskConfig"]["TaskAvailabilityLifetimeInSeconds"] = 30 * 86400 + 1
    with pytest.raises(ClientError, match="exceeds the maximum of 2592000"):
        sm.create_labeling_job(**private)
