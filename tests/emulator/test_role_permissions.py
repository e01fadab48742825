"""SageMaker jobs act as their execution role: its permission policies must let it read the input and
write the output, as on AWS. Plus the shared evaluator of a role's permission policies."""

import io
import json
import uuid

import boto3
import pytest
from PIL import Image

from deeplens_pipeline.groundtruth import LABELING_CORS_RULE
from deeplens_pipeline.params import validate_params
from deeplens_pipeline.training import training_job_config, tuning_job_config
from emulator.extension.role_permissions import RolePermissions, documents_allow, s3_arn
from emulator.sample_dataset import generate_sample_dataset
from emulator.seed import IAM_DIR, ensure_role
from tests.conftest import stage_sample_split
from tests.emulator.helpers import wait_for_job as wait

REGION = "us-east-1"
BUCKET = "deeplens-perm-test"
ACS_LAMBDA = "arn:aws:lambda:us-east-1:432418664414:function:ACS-BoundingBox"
PROJECT_POLICY = json.loads((IAM_DIR / "sagemaker-execution-role.json").read_text())
SAGEMAKER_TRUST = (IAM_DIR / "sagemaker-execution-role-trust.json").read_text()


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action, resource):
    return {"Effect": "Deny", "Action": action, "Resource": resource}


# --- the evaluator -----------------------------------------------------------------------------


def test_an_allow_grants_only_its_actions_on_its_resources():
    documents = [policy(allow(["s3:GetObject"], "arn:aws:s3:::b/data/*"))]
    assert documents_allow(documents, "s3:GetObject", "arn:aws:s3:::b/data/x.jpg")
    assert documents_allow(documents, "S3:getobject", "arn:aws:s3:::b/data/x.jpg")  # actions: any case
    assert not documents_allow(documents, "s3:PutObject", "arn:aws:s3:::b/data/x.jpg")
    assert not documents_allow(documents, "s3:GetObject", "arn:aws:s3:::b/other/x.jpg")
    assert not documents_allow(documents, "s3:GetObject", "arn:aws:s3:::c/data/x.jpg")
    assert not documents_allow([], "s3:GetObject", "arn:aws:s3:::b/data/x.jpg")  # no Allow means no


def test_wildcards_in_actions_and_resources():
    documents = [policy(allow("s3:Get*", "arn:aws:s3:::deeplens-*/*"))]
    assert documents_allow(documents, "s3:GetObject", "arn:aws:s3:::deeplens-demo/a/b/c.jpg")
    assert not documents_allow(documents, "s3:GetObject", "arn:aws:s3:::other/a.jpg")
    assert not documents_allow(documents, "s3:GetBucketLocation", "arn:aws:s3:::deeplens-demo")  # not /*
    assert documents_allow([policy(allow("*", "*"))], "s3:PutObject", "arn:aws:s3:::any/k")
    not_action = {"Effect": "Allow", "NotAction": "s3:PutObject", "Resource": "*"}
    assert documents_allow([policy(not_action)], "s3:GetObject", "arn:aws:s3:::b/k")
    assert not documents_allow([policy(not_action)], "s3:PutObject", "arn:aws:s3:::b/k")


def test_an_explicit_deny_wins_in_any_policy():
    broad = policy(allow("s3:*", "*"))
    secret = policy(deny("s3:GetObject", "arn:aws:s3:::b/secret/*"))
    assert not documents_allow([broad, secret], "s3:GetObject", "arn:aws:s3:::b/secret/k")
    assert not documents_allow([secret, broad], "s3:GetObject", "arn:aws:s3:::b/secret/k")
    assert documents_allow([broad, secret], "s3:GetObject", "arn:aws:s3:::b/open/k")
    same = policy(allow("s3:GetObject", "*"), deny("s3:*", "arn:aws:s3:::b/*"))
    assert not documents_allow([same], "s3:GetObject", "arn:aws:s3:::b/k")


def test_conditional_statements_neither_grant_nor_deny():
    conditional = {**allow("s3:GetObject", "*"), "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    assert not documents_allow([policy(conditional)], "s3:GetObject", "arn:aws:s3:::b/k")
    conditional_deny = {**deny("s3:GetObject", "*"), "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert documents_allow(
        [policy(allow("s3:GetObject", "*"), conditional_deny)], "s3:GetObject", "arn:aws:s3:::b/k"
    )


def test_the_project_policy_reads_and_writes_the_pipeline_buckets_only():
    documents = [PROJECT_POLICY]
    for action in ("s3:GetObject", "s3:PutObject"):
        assert documents_allow(documents, action, s3_arn("deeplens-demo", "m/train.manifest"))
        assert not documents_allow(documents, action, s3_arn("someone-else", "m/train.manifest"))
    assert documents_allow(documents, "s3:ListBucket", s3_arn("deeplens-demo"))
    assert not documents_allow(documents, "s3:DeleteObject", s3_arn("deeplens-demo", "k"))


@pytest.fixture(scope="module")
def iam(emulator):
    return boto3.client("iam", endpoint_url=emulator.url, region_name=REGION)


def make_role(iam, prefix, *statements):
    """A role SageMaker may assume, with these statements as its inline permission policy (if any)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=SAGEMAKER_TRUST)["Role"]["Arn"]
    if statements:
        iam.put_role_policy(
            RoleName=name, PolicyName="access", PolicyDocument=json.dumps(policy(*statements))
        )
    return arn


def test_attached_managed_policies_count_and_verdicts_are_cached(iam):
    arn = make_role(iam, "perm-managed")
    name = arn.rsplit("/", 1)[1]
    assert not RolePermissions(arn).allows_s3("s3:GetObject", "b", "k")
    managed = iam.create_policy(
        PolicyName=f"read-{uuid.uuid4().hex[:8]}",
        PolicyDocument=json.dumps(policy(allow("s3:GetObject", "*"))),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    permissions = RolePermissions(arn)
    assert permissions.exists()
    assert permissions.allows_s3("s3:GetObject", "b", "k")
    assert not permissions.allows_s3("s3:PutObject", "b", "k")
    refusal = iam.create_policy(
        PolicyName=f"deny-{uuid.uuid4().hex[:8]}",
        PolicyDocument=json.dumps(policy(deny("s3:GetObject", "arn:aws:s3:::b/*"))),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn=refusal)
    assert permissions.allows_s3("s3:GetObject", "b", "k")  # read when the job started: kept
    assert not RolePermissions(arn).allows_s3("s3:GetObject", "b", "k")  # a new job sees the Deny
    missing = RolePermissions("arn:aws:iam::123456789012:role/perm-no-such-role")
    assert not missing.exists() and not missing.allows_s3("s3:GetObject", "b", "k")


# --- jobs through the emulator -----------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(emulator, iam, tmp_path_factory):
    root = generate_sample_dataset(tmp_path_factory.mktemp("ds"), n_images=4)
    split = stage_sample_split(emulator.url, BUCKET, root, n_train=2)
    clients = {s: boto3.client(s, endpoint_url=emulator.url, region_name=REGION) for s in ("s3", "sagemaker")}
    s3 = clients["s3"]
    s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [LABELING_CORS_RULE]})
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "JPEG")
    s3.put_object(Bucket=BUCKET, Key="label/photo.jpg", Body=buf.getvalue())
    s3.put_object(
        Bucket=BUCKET,
        Key="label/in.manifest",
        Body=b'{"source-ref": "s3://%s/label/photo.jpg"}\n' % BUCKET.encode(),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key="label/labels.json",
        Body=json.dumps({"document-version": "2018-11-28", "labels": [{"label": "box"}]}).encode(),
    )
    s3.put_object(Bucket=BUCKET, Key="label/template.liquid", Body=b"<crowd-form></crowd-form>")
    team = clients["sagemaker"].create_workteam(
        WorkteamName="perm-team",
        Description="d",
        MemberDefinitions=[{"CognitoMemberDefinition": {"UserPool": "p", "UserGroup": "g", "ClientId": "c"}}],
    )
    read_all = allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*")
    return {
        **clients,
        "split": split,
        "workteam": team["WorkteamArn"],
        "roles": {
            "none": make_role(iam, "perm-none"),
            "logs-only": make_role(iam, "perm-logs", allow("logs:*", "*")),
            "read-only": make_role(iam, "perm-read", read_all),
            "manifests-only": make_role(
                iam, "perm-manifests", allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/m/*")
            ),
            "project": ensure_role(iam, "perm-project", "sagemaker-execution-role"),
        },
    }


def training_request(aws, name, role):
    split = aws["split"]
    params = validate_params(
        {
            "bucket": BUCKET,
            "classes": split["classes"],
            "image_shape": 300,
            "epochs": 2,
            "lr_scheduler_step": "1",
            "tuning_max_jobs": 2,
            "role_arn": aws["roles"][role],
        }
    )
    args = dict(
        train_uri=split["train_uri"],
        validation_uri=split["validation_uri"],
        output_uri=f"s3://{BUCKET}/output/",
        num_training_samples=split["train_count"],
    )
    return params, args


def labeling_request(aws, name, role):
    return {
        "LabelingJobName": name,
        "LabelAttributeName": "bounding-box",
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": f"s3://{BUCKET}/label/in.manifest"}}
        },
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/labels-out/"},
        "RoleArn": aws["roles"][role],
        "LabelCategoryConfigS3Uri": f"s3://{BUCKET}/label/labels.json",
        "HumanTaskConfig": {
            "WorkteamArn": aws["workteam"],
            "UiConfig": {"UiTemplateS3Uri": f"s3://{BUCKET}/label/template.liquid"},
            "PreHumanTaskLambdaArn": "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox",
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 300,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": ACS_LAMBDA},
        },
    }


def run_training(aws, name, role):
    sm = aws["sagemaker"]
    params, args = training_request(aws, name, role)
    sm.create_training_job(**training_job_config(job_name=name, params=params, **args))
    return wait(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus")


def run_labeling(aws, name, role):
    sm = aws["sagemaker"]
    sm.create_labeling_job(**labeling_request(aws, name, role))
    return wait(lambda: sm.describe_labeling_job(LabelingJobName=name), "LabelingJobStatus", timeout=30)


@pytest.mark.parametrize("role", ["none", "logs-only"])
def test_a_training_job_whose_role_cannot_read_the_manifest_fails(aws, role):
    job = run_training(aws, f"perm-train-{role}", role)
    arn = aws["roles"][role]
    manifest = aws["split"]["train_uri"]
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"ClientError: Data download failed:Unable to download object {manifest} (AccessDenied: Access "
        f"Denied). The execution role {arn} is not allowed s3:GetObject on "
        f"arn:aws:s3:::{BUCKET}/m/train.manifest"
    )
    assert job["SecondaryStatus"] == "Failed"
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == ["Starting", "Downloading"]
    assert "ModelArtifacts" not in job


def test_a_training_job_whose_role_cannot_read_an_image_fails_naming_it(aws):
    job = run_training(aws, "perm-train-images", "manifests-only")
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith(
        f"ClientError: Data download failed:Unable to download object s3://{BUCKET}/input/"
    )
    assert "(AccessDenied: Access Denied)" in reason
    assert aws["roles"]["manifests-only"] in reason and "s3:GetObject" in reason


def test_a_training_job_whose_role_cannot_write_the_output_fails_at_the_upload(aws):
    name = "perm-train-read-only"
    job = run_training(aws, name, "read-only")
    out = f"s3://{BUCKET}/output/{name}/output/model.tar.gz"
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"ClientError: Model upload failed:Unable to upload object {out} (AccessDenied: Access Denied). "
        f"The execution role {aws['roles']['read-only']} is not allowed s3:PutObject on "
        f"arn:aws:s3:::{BUCKET}/output/{name}/output/model.tar.gz"
    )
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-1] == "Uploading"
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"output/{name}/").get("Contents", [])
    assert listed == []


def test_a_training_job_with_the_project_policy_completes(aws):
    name = "perm-train-project"
    job = run_training(aws, name, "project")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/output/{name}/output/model.tar.gz"


def test_a_tuning_job_whose_role_cannot_read_fails_with_every_training_job(aws, emulator):
    sm = aws["sagemaker"]
    name = "perm-tune-none"
    params, args = training_request(aws, name, "none")
    sm.create_hyper_parameter_tuning_job(**tuning_job_config(job_name=name, params=params, **args))
    job = wait(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        "HyperParameterTuningJobStatus",
    )
    runs = emulator.settings.max_tuning_jobs
    assert job["HyperParameterTuningJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"No training job succeeded after {runs} attempts. "
        "Please take a look at the training job failures to get more details."
    )
    assert job["TrainingJobStatusCounters"]["NonRetryableError"] == runs
    trained = sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    assert len(trained) == runs
    for summary in trained:
        failed = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        assert failed["TrainingJobStatus"] == "Failed"
        assert "Data download failed" in failed["FailureReason"]
        assert aws["roles"]["none"] in failed["FailureReason"]


def test_a_labeling_job_whose_role_cannot_read_the_manifest_fails(aws):
    job = run_labeling(aws, "perm-label-none", "none")
    assert job["LabelingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"ClientError: Could not read s3://{BUCKET}/label/in.manifest (AccessDenied: Access Denied). "
        f"Ensure the object exists, that the role {aws['roles']['none']} has permission s3:GetObject on "
        f"arn:aws:s3:::{BUCKET}/label/in.manifest and try your request again."
    )
    assert "LabelingJobOutput" not in job


@pytest.mark.parametrize(
    ("denied", "uri"),
    [
        ("label/labels.json", f"s3://{BUCKET}/label/labels.json"),
        ("label/template.liquid", f"s3://{BUCKET}/label/template.liquid"),
        ("label/photo.jpg", f"s3://{BUCKET}/label/photo.jpg"),
    ],
)
def test_a_labeling_job_needs_every_input_object(aws, iam, denied, uri):
    arn = make_role(
        iam,
        "perm-label",
        allow(["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::{BUCKET}/*"),
        deny("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{denied}"),
    )
    aws["roles"][f"deny-{denied}"] = arn
    job = run_labeling(aws, f"perm-label-{denied.replace('/', '-').replace('.', '-')}", f"deny-{denied}")
    assert job["LabelingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        f"ClientError: Could not read {uri} (AccessDenied: Access Denied)."
    )
    assert f"the role {arn} has permission s3:GetObject" in job["FailureReason"]


def test_a_labeling_job_whose_role_cannot_write_the_output_fails(aws):
    name = "perm-label-read-only"
    job = run_labeling(aws, name, "read-only")
    out = f"s3://{BUCKET}/labels-out/{name}/manifests/output/output.manifest"
    assert job["LabelingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"ClientError: Could not write {out} (AccessDenied: Access Denied). Ensure that the role "
        f"{aws['roles']['read-only']} has permission s3:PutObject on "
        f"arn:aws:s3:::{BUCKET}/labels-out/{name}/manifests/output/output.manifest "
        "and try your request again."
    )
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"labels-out/{name}/").get("Contents", [])
    assert listed == []


def test_a_labeling_job_with_the_project_policy_completes(aws):
    name = "perm-label-project"
    job = run_labeling(aws, name, "project")
    assert job["LabelingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["LabelingJobOutput"]["OutputDatasetS3Uri"] == (
        f"s3://{BUCKET}/labels-out/{name}/manifests/output/output.manifest"
    )
