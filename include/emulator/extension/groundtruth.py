"""Ground Truth for the emulator: labelling jobs, work teams, and a simulated workforce.

moto 5.2.5 has neither. The API is SageMaker's (CreateLabelingJob, DescribeLabelingJob,
ListLabelingJobs, StopLabelingJob, CreateWorkteam, DescribeWorkteam, ListWorkteams), served by
moto's SageMaker endpoint so boto3 validates every request and response against the service model.

The simulated workforce labels each image from the sample dataset's answer key after a delay.
It finds the answer by the S3 object's ``deeplens-source`` metadata (written by the upload stage),
maps the boxes through the ``deeplens-transform`` metadata (the preprocessing geometry) and writes
``<S3OutputPath>/<job>/manifests/output/output.manifest`` in Ground Truth's real format. A job tagged
``emulator:outcome=Failed`` fails (reason from the tag ``emulator:failure-reason``).

The job acts as its execution role (``RoleArn``), as on AWS: before any task is labelled, the role's
permission policies must allow ``s3:GetObject`` on the input manifest, on every image it lists, on
the label category configuration and on the worker task template (``UiTemplateS3Uri``), and
``s3:PutObject`` on the output manifest; otherwise the job fails with a ``ClientError`` that names
the object, the role and the permission, in the form Ground Truth uses for a resource its role cannot
use ("Ensure ..., that the role <arn> has permissions to ... and try your request again.", quoted for
a Lambda function in aws-samples/amazon-comprehend-semi-structured-documents-annotation-tools#3).
The exact wording AWS uses for S3 is not confirmed.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.responses import SageMakerResponse
from PIL import Image

from emulator.extension.role_permissions import RolePermissions
from emulator.extension.runtime import Runtime

log = logging.getLogger("emulator.groundtruth")

_lock = threading.Lock()
_jobs: dict[tuple[str, str, str], dict[str, Any]] = {}
_workteams: dict[tuple[str, str, str], dict[str, Any]] = {}


def _now() -> datetime:
    return datetime.now(UTC)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); ValueError naming the URI otherwise."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


# --- work teams -----------------------------------------------------------------------------


def _create_workteam(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("WorkteamName")
    key = (self.current_account, self.region, name)
    with _lock:
        if key in _workteams:
            raise ResourceInUseException(f"Workteam {name} already exists")
        arn = f"arn:aws:sagemaker:{self.region}:{self.current_account}:workteam/private-crowd/{name}"
        _workteams[key] = {
            "WorkteamName": name,
            "MemberDefinitions": self._get_param("MemberDefinitions"),
            "WorkteamArn": arn,
            "Description": self._get_param("Description"),
            "CreateDate": _now(),
            "LastUpdatedDate": _now(),
            "SubDomain": f"{name}.labeling.{self.region}.sagemaker.aws",
        }
    return ActionResult({"WorkteamArn": arn})


def _find_workteam(account: str, region: str, arn: str) -> dict[str, Any] | None:
    with _lock:
        return next(
            (
                t
                for (a, r, _), t in _workteams.items()
                if (a, r) == (account, region) and t["WorkteamArn"] == arn
            ),
            None,
        )


def _describe_workteam(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("WorkteamName")
    team = _workteams.get((self.current_account, self.region, name))
    if team is None:
        raise ValidationError(f"Workteam {name} does not exist")
    return ActionResult({"Workteam": team})


def _list_workteams(self: SageMakerResponse) -> ActionResult:
    teams = [
        t for (a, r, _), t in sorted(_workteams.items()) if (a, r) == (self.current_account, self.region)
    ]
    return ActionResult({"Workteams": teams})


# --- labelling jobs -------------------------------------------------------------------------


def _create_labeling_job(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("LabelingJobName")
    attribute = self._get_param("LabelAttributeName")
    if attribute.endswith(("-metadata", "-ref")):
        raise ValidationError(f"LabelAttributeName {attribute!r} must not end with '-metadata' or '-ref'")
    human = self._get_param("HumanTaskConfig")
    _check_workforce(self.current_account, self.region, human)
    key = _job_key(self.current_account, self.region, name)
    arn = f"arn:aws:sagemaker:{self.region}:{self.current_account}:labeling-job/{name.lower()}"
    with _lock:
        if key in _jobs:  # names are never reusable, and compare case-insensitively
            raise ResourceInUseException(
                f"Labeling job {name} already exists (ARN {_jobs[key]['LabelingJobArn']})"
            )
        now = _now()
        job = {
            "LabelingJobName": name,
            "LabelingJobArn": arn,
            "LabelingJobStatus": "InProgress",
            "LabelCounters": _counters(0, 0),
            "CreationTime": now,
            "LastModifiedTime": now,
            "JobReferenceCode": name[:16],
            "LabelAttributeName": attribute,
            "InputConfig": self._get_param("InputConfig"),
            "OutputConfig": self._get_param("OutputConfig"),
            "RoleArn": self._get_param("RoleArn"),
            "LabelCategoryConfigS3Uri": self._get_param("LabelCategoryConfigS3Uri"),
            "StoppingConditions": self._get_param("StoppingConditions"),
            "HumanTaskConfig": human,
            "Tags": self._get_param("Tags") or [],
        }
        job = {k: v for k, v in job.items() if v is not None}
        _jobs[key] = job
    runtime = Runtime.get()
    runtime.spawn(f"labeling-{name}", lambda: _workforce(runtime, key))
    return ActionResult({"LabelingJobArn": arn})


def _job_key(account: str, region: str, name: str) -> tuple[str, str, str]:
    """Labelling job names are unique per account and region, compared case-insensitively."""
    return (account, region, name.lower())


# HumanTaskConfig limits by workforce (botocore's sagemaker model, TaskAvailabilityLifetimeInSeconds
# and PublicWorkforceTaskPrice): the public crowd (Mechanical Turk) at most 12 hours and a price per
# task; private and vendor work teams at most 30 days.
_PUBLIC_MAX_AVAILABILITY = 12 * 3600
_MAX_AVAILABILITY = 30 * 24 * 3600


def _check_workforce(account: str, region: str, human: dict[str, Any]) -> None:
    arn = human["WorkteamArn"]
    public = ":workteam/public-crowd/" in arn
    if not public and ":workteam/vendor-crowd/" not in arn and _find_workteam(account, region, arn) is None:
        raise ValidationError(f"Workteam {arn} does not exist")
    availability = human.get("TaskAvailabilityLifetimeInSeconds")
    limit = _PUBLIC_MAX_AVAILABILITY if public else _MAX_AVAILABILITY
    if availability is not None and availability > limit:
        raise ValidationError(
            f"TaskAvailabilityLifetimeInSeconds {availability} exceeds the maximum of {limit} seconds "
            f"for a {'public' if public else 'private or vendor'} workforce"
        )
    if public and not human.get("PublicWorkforceTaskPrice"):
        raise ValidationError(
            "PublicWorkforceTaskPrice is required when the workforce is public (Amazon Mechanical Turk)"
        )


def _counters(labeled: int, unlabeled: int, failed: int = 0) -> dict[str, int]:
    return {
        "TotalLabeled": labeled,
        "HumanLabeled": labeled,
        "MachineLabeled": 0,
        "FailedNonRetryableError": failed,
        "Unlabeled": unlabeled,
    }


def _get_job(self: SageMakerResponse) -> dict[str, Any]:
    # The service model lists ResourceNotFound, but the real service answers an unknown labelling
    # job with ValidationException (AWS's sagemaker-controller maps its "not found" so).
    name = self._get_param("LabelingJobName")
    job = _jobs.get(_job_key(self.current_account, self.region, name))
    if job is None:
        raise ValidationError(f"Requested resource not found: labeling job {name} does not exist")
    return job


def _describe_labeling_job(self: SageMakerResponse) -> ActionResult:
    with _lock:
        return ActionResult(dict(_get_job(self)))


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "LabelingJobName",
        "LabelingJobArn",
        "CreationTime",
        "LastModifiedTime",
        "LabelingJobStatus",
        "LabelCounters",
        "FailureReason",
        "LabelingJobOutput",
        "InputConfig",
    )
    summary = {k: job[k] for k in keys if k in job}
    summary["WorkteamArn"] = job["HumanTaskConfig"]["WorkteamArn"]
    summary["PreHumanTaskLambdaArn"] = job["HumanTaskConfig"].get("PreHumanTaskLambdaArn", "")
    return summary


def _list_labeling_jobs(self: SageMakerResponse) -> ActionResult:
    status = self._get_param("StatusEquals")
    contains = self._get_param("NameContains")
    descending = self._get_param("SortOrder", "Descending") == "Descending"
    max_results = self._get_param("MaxResults") or 100
    with _lock:
        jobs = [
            _summary(j)
            for (a, r, _), j in _jobs.items()
            if (a, r) == (self.current_account, self.region)
            and (not status or j["LabelingJobStatus"] == status)
            and (not contains or contains.lower() in j["LabelingJobName"].lower())
        ]
    jobs.sort(key=lambda j: j["CreationTime"], reverse=descending)
    return ActionResult({"LabelingJobSummaryList": jobs[:max_results]})


def _stop_labeling_job(self: SageMakerResponse) -> EmptyResult:
    with _lock:
        job = _get_job(self)
        if job["LabelingJobStatus"] == "InProgress":
            job["LabelingJobStatus"] = "Stopping"
            job["LastModifiedTime"] = _now()
    return EmptyResult()


# --- the simulated workforce ----------------------------------------------------------------


def load_answer_keys(paths: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
    """File name → answer (width, height, objects) from every answer key."""
    answers: dict[str, dict[str, Any]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        for name, entry in data["images"].items():
            answers[PurePosixPath(name).name] = entry
    return answers


def map_box(obj: dict[str, Any], transform: dict[str, Any]) -> dict[str, int] | None:
    """A source-image box mapped into the prepared image, clipped; None when mostly outside."""
    s, dx, dy, size = transform["scale"], transform["dx"], transform["dy"], transform["size"]
    left, top = obj["left"] * s + dx, obj["top"] * s + dy
    right, bottom = left + obj["width"] * s, top + obj["height"] * s
    area = (right - left) * (bottom - top)
    cl, ct = max(0.0, left), max(0.0, top)
    cr, cb = min(float(size), right), min(float(size), bottom)
    if cr - cl < 2 or cb - ct < 2 or (cr - cl) * (cb - ct) < 0.5 * area:
        return None
    return {"left": round(cl), "top": round(ct), "width": round(cr - cl), "height": round(cb - ct)}


def _set(key: tuple[str, str, str], **fields: Any) -> None:
    with _lock:
        _jobs[key].update(fields, LastModifiedTime=_now())


def _status(key: tuple[str, str, str]) -> str:
    with _lock:
        return _jobs[key]["LabelingJobStatus"]


def _workforce(runtime: Runtime, key: tuple[str, str, str]) -> None:
    _, region, _ = key
    job = dict(_jobs[key])
    name = job["LabelingJobName"]
    deadline = time.monotonic() + runtime.settings.labeling_delay_seconds
    while time.monotonic() < deadline:
        if _status(key) == "Stopping":
            _set(key, LabelingJobStatus="Stopped", FailureReason="Stopped by StopLabelingJob")
            return
        time.sleep(0.1)
    tags = {t["Key"]: t["Value"] for t in job.get("Tags", [])}
    if tags.get("emulator:outcome") == "Failed":
        _set(
            key,
            LabelingJobStatus="Failed",
            FailureReason=tags.get("emulator:failure-reason", "Simulated failure (emulator:outcome=Failed)"),
        )
        return
    s3 = runtime.client("s3", region)
    permissions = RolePermissions(job["RoleArn"])  # the job acts as its execution role
    out_uri = output_manifest_uri(job)
    try:
        lines, classes = _read_inputs(s3, job, permissions)
        _require(permissions, "s3:PutObject", out_uri)
        _check_cors(s3, lines, worker_portal_origin(key[0], region, job["HumanTaskConfig"]["WorkteamArn"]))
        answers = load_answer_keys(runtime.settings.answer_keys)
        output = [_label(s3, job, line, classes, answers) for line in lines]
    except Exception as err:  # the job fails with the reason, as Ground Truth reports it
        log.warning("labelling job %s failed: %s", name, err)
        _set(key, LabelingJobStatus="Failed", FailureReason=f"ClientError: {err}")
        return
    if _status(key) == "Stopping":
        _set(key, LabelingJobStatus="Stopped", FailureReason="Stopped by StopLabelingJob")
        return
    bucket, out_key = split_s3_uri(out_uri)
    s3.put_object(Bucket=bucket, Key=out_key, Body="".join(json.dumps(o) + "\n" for o in output).encode())
    _set(
        key,
        LabelingJobStatus="Completed",
        LabelCounters=_counters(len(output), 0),
        LabelingJobOutput={"OutputDatasetS3Uri": out_uri},
    )
    log.info("labelling job %s completed: %d images", name, len(output))


def output_manifest_uri(job: dict[str, Any]) -> str:
    """Where the job writes its output manifest."""
    return (
        f"{job['OutputConfig']['S3OutputPath'].rstrip('/')}/{job['LabelingJobName']}"
        "/manifests/output/output.manifest"
    )


def access_denied(permissions: RolePermissions, action: str, uri: str) -> str:
    """Why the job cannot use an S3 object as its role (the FailureReason, after ``ClientError: ``)."""
    bucket, key = split_s3_uri(uri)
    verb = "write" if action == "s3:PutObject" else "read"
    exists = "" if action == "s3:PutObject" else "the object exists, "
    return (
        f"Could not {verb} {uri} (AccessDenied: Access Denied). Ensure {exists}that the role "
        f"{permissions.role_arn} has permission {action} on arn:{permissions.partition}:s3:::{bucket}/{key} "
        "and try your request again."
    )


def _require(permissions: RolePermissions, action: str, uri: str) -> None:
    bucket, key = split_s3_uri(uri)
    if not permissions.allows_s3(action, bucket, key):
        raise ValueError(access_denied(permissions, action, uri))


def _read_inputs(s3: Any, job: dict[str, Any], permissions: RolePermissions) -> tuple[list[str], list[str]]:
    """The manifest's lines and the label categories, read as the job's role; every object the tasks
    show the workers (each image, the task template) must be readable by the role too."""
    manifest_uri = job["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
    _require(permissions, "s3:GetObject", manifest_uri)
    bucket, key = split_s3_uri(manifest_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except s3.exceptions.ClientError as err:
        raise ValueError(f"the input manifest {manifest_uri} could not be read ({err})") from None
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"the input manifest {manifest_uri} is empty")
    config_uri = job.get("LabelCategoryConfigS3Uri")
    if not config_uri:
        raise ValueError("LabelCategoryConfigS3Uri is required for bounding-box jobs")
    _require(permissions, "s3:GetObject", config_uri)
    template_uri = job["HumanTaskConfig"].get("UiConfig", {}).get("UiTemplateS3Uri")
    if template_uri:
        _require(permissions, "s3:GetObject", template_uri)
    for line in lines:
        _require(permissions, "s3:GetObject", json.loads(line)["source-ref"])
    cb, ck = split_s3_uri(config_uri)
    config = json.loads(s3.get_object(Bucket=cb, Key=ck)["Body"].read())
    return lines, [entry["label"] for entry in config["labels"]]


def worker_portal_origin(account: str, region: str, workteam_arn: str) -> str:
    """The origin the workers' browsers load images from: the private team's own portal
    (``https://<subdomain>.labeling.<region>.sagemaker.aws``), else one no rule can guess."""
    team = _find_workteam(account, region, workteam_arn)
    subdomain = team["SubDomain"] if team else f"{uuid.uuid4().hex[:12]}.labeling.{region}.sagemaker.aws"
    return f"https://{subdomain}"


def cors_allows_workers(rules: list[dict[str, Any]], origin: str) -> bool:
    """Whether a bucket's CORS rules let ``origin`` GET its images, as S3 matches origins: exactly,
    ``*``, or with one ``*`` wildcard."""
    return any(
        "GET" in rule.get("AllowedMethods", [])
        and any(fnmatch.fnmatchcase(origin, pattern) for pattern in rule.get("AllowedOrigins", []))
        for rule in rules
    )


def _check_cors(s3: Any, lines: list[str], origin: str) -> None:
    """Ground Truth's tasks fail when a bucket holding input images has no suitable CORS rule."""
    buckets = sorted({split_s3_uri(json.loads(line)["source-ref"])[0] for line in lines})
    for bucket in buckets:
        try:
            rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
        except s3.exceptions.ClientError:
            rules = []
        if not cors_allows_workers(rules, origin):
            raise ValueError(
                f"the workers' browsers could not load the images in s3://{bucket}: the bucket has no CORS "
                f"rule allowing GET from the labeling portal {origin} "
                "(see 'CORS Requirement for Input Image Data')"
            )


def _label(
    s3: Any, job: dict[str, Any], line: str, classes: list[str], answers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    ref = json.loads(line)["source-ref"]
    bucket, key = split_s3_uri(ref)
    obj = s3.get_object(Bucket=bucket, Key=key)
    with Image.open(io.BytesIO(obj["Body"].read())) as image:
        width, height = image.size
        depth = len(image.getbands())
    meta = obj.get("Metadata", {})
    answer = answers.get(PurePosixPath(meta.get("deeplens-source", key)).name)
    annotations = []
    if answer is not None and "deeplens-transform" in meta:
        transform = json.loads(meta["deeplens-transform"])
        for item in answer["objects"]:
            if item["label"] not in classes:
                continue
            box = map_box(item, transform)
            if box is not None:
                annotations.append({"class_id": classes.index(item["label"]), **box})
    elif answer is None:
        log.info("no answer for %s: the simulated worker draws no box", ref)
    attribute = job["LabelAttributeName"]
    return {
        "source-ref": ref,
        attribute: {
            "image_size": [{"width": width, "height": height, "depth": depth}],
            "annotations": annotations,
        },
        f"{attribute}-metadata": {
            "objects": [{"confidence": 0.09} for _ in annotations],
            "class-map": {str(i): c for i, c in enumerate(classes)},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": _now().strftime("%Y-%m-%dT%H:%M:%S.%f"),
            "job-name": f"labeling-job/{job['LabelingJobName']}",
        },
    }


def register() -> None:
    """Add the Ground Truth and work-team actions to moto's SageMaker endpoint."""
    SageMakerResponse.create_labeling_job = _create_labeling_job
    SageMakerResponse.describe_labeling_job = _describe_labeling_job
    SageMakerResponse.list_labeling_jobs = _list_labeling_jobs
    SageMakerResponse.stop_labeling_job = _stop_labeling_job
    SageMakerResponse.create_workteam = _create_workteam
    SageMakerResponse.describe_workteam = _describe_workteam
    SageMakerResponse.list_workteams = _list_workteams
