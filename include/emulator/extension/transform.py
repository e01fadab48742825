"""Batch transform jobs that really run the model, for the emulator.

moto 5.2.5 completes a transform job the moment it is created, writes nothing, accepts a model
that does not exist and a name already used, and has no StopTransformJob. Here CreateTransformJob
checks what SageMaker checks when the job is created, then the job runs InProgress → Completed
(or Failed/Stopped) over real time: the model's ``ModelDataUrl`` and every input object are read
from the emulated S3 as the model's execution role (``s3:GetObject``, as training jobs do), the ML
tools environment answers each object as the built-in object-detection algorithm does
(``python -m emulator.batch_predict``), and each answer is written to
``<S3OutputPath>/<object's path relative to the prefix>.out`` (``s3:PutObject`` as the role).

Refused at create, as SageMaker refuses:

- a model that does not exist: ValidationException ``Could not find model "<arn>".`` (the wording
  quoted in aws/deep-learning-containers#586);
- a name already used: ResourceInUse (transform job names are unique per account and region and are
  never freed, aws/amazon-sagemaker-examples#633; the message follows the training job's, quoted in
  aws/amazon-sagemaker-examples#3108);
- ``AugmentedManifestFile`` input ("The following value is not compatible: AugmentedManifestFile",
  API_TransformS3DataSource);
- an ``S3Prefix`` with no object under it: ValidationException "No S3 objects found under S3 URL ..."
  (quoted in aws/amazon-sagemaker-examples#2270).

The job fails as the algorithm fails it: a content type other than image/jpeg or image/png, a
SplitType other than None, or a body that is not such an image (``ClientError: 400``). The emulator
serves only the built-in object-detection algorithm's image; another model image is refused with a
ValidationException saying so.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import FakeTransformJob, arn_formatter, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from emulator.extension.groundtruth import split_s3_uri
from emulator.extension.role_permissions import RolePermissions
from emulator.extension.runtime import Runtime
from emulator.extension.training import access_denied
from emulator.settings import REPO_ROOT

log = logging.getLogger("emulator.transform")

CONTENT_TYPES = ("image/jpeg", "image/png")
ALGORITHM_REPOSITORY = "/object-detection:"
_stop_requests: set[tuple[str, str, str]] = set()
_processes: dict[tuple[str, str, str], subprocess.Popen[str]] = {}
_lock = threading.Lock()

_original_create_transform_job = SageMakerResponse.create_transform_job


def _now() -> datetime:
    return datetime.now(UTC)


def model_arn(name: str, account: str, region: str) -> str:
    """The ARN SageMaker gives the model ``name``."""
    return arn_formatter("model", name, account, region)


def list_inputs(
    s3: Any, source: dict[str, Any], permissions: RolePermissions | None
) -> list[tuple[str, str]]:
    """(input URI, path relative to the prefix) of every object a transform input names."""
    uri, kind = source["S3Uri"], source["S3DataType"]
    if kind == "S3Prefix":
        bucket, prefix = split_s3_uri(uri if "/" in uri[5:] else uri + "/")
        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        ]
        return [(f"s3://{bucket}/{key}", key[len(prefix) :].lstrip("/")) for key in keys]
    _require(permissions, uri, "s3:GetObject")
    bucket, key = split_s3_uri(uri)
    try:
        entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        prefix = entries[0]["prefix"]
        relative = [str(e) for e in entries[1:]]
    except s3.exceptions.ClientError as err:
        raise RuntimeError(f"ClientError: cannot read the manifest {uri}: {err}") from None
    except (ValueError, TypeError, KeyError, IndexError):
        raise RuntimeError(
            f'ClientError: {uri} is not a manifest file ([{{"prefix": "s3://..."}}, "relative/key", ...])'
        ) from None
    return [(prefix + rel if prefix.endswith("/") else f"{prefix}/{rel}", rel) for rel in relative]


def _require(permissions: RolePermissions | None, uri: str, action: str) -> None:
    bucket, key = split_s3_uri(uri)
    if permissions is not None and not permissions.allows_s3(action, bucket, key):
        raise RuntimeError(access_denied(uri, permissions, action))


def _create_transform_job(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("TransformJobName")
    backend = self.sagemaker_backend
    if name in backend.transform_jobs:
        raise ResourceInUseException(
            f"Transform job names must be unique within an AWS account and region, and a transform job "
            f"with this name already exists ({backend.transform_jobs[name].arn})"
        )
    model_name = self._get_param("ModelName")
    model = backend._models.get(model_name)
    if model is None:
        raise ValidationError(
            f'Could not find model "{model_arn(model_name, self.current_account, self.region)}".'
        )
    image = (model.primary_container or {}).get("Image", "")
    if ALGORITHM_REPOSITORY not in image:
        raise ValidationError(
            "the emulator serves only the built-in object-detection algorithm; "
            f"model {model_name} runs {image!r}"
        )
    source = self._get_param("TransformInput")["DataSource"]["S3DataSource"]
    if source["S3DataType"] not in ("ManifestFile", "S3Prefix"):
        raise ValidationError(
            f"S3DataType {source['S3DataType']} is not compatible with batch transform: "
            "use ManifestFile or S3Prefix"
        )
    if source["S3DataType"] == "S3Prefix":
        s3 = Runtime.get().client("s3", self.region)
        try:
            found = list_inputs(s3, source, None)
        except s3.exceptions.ClientError:
            found = []
        if not found:
            raise ValidationError(
                f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in input data source. Please '
                f"ensure that the bucket exists in the selected region ({self.region}), that objects exist "
                f'under that S3 prefix, and that the role "{model.execution_role_arn}" has "s3:ListBucket" '
                "permissions on the bucket."
            )
    result = _original_create_transform_job(self)
    job = backend.transform_jobs[name]
    job.transform_job_status = "InProgress"
    job.failure_reason = None
    job.transform_end_time = None
    job.labeling_job_arn = job.auto_ml_job_arn = None
    runtime = Runtime.get()
    key = (self.current_account, self.region, name)
    runtime.spawn(f"transform-{name}", lambda: _run_transform(runtime, key))
    return result


def _stop_transform_job(self: SageMakerResponse) -> EmptyResult:
    name = self._get_param("TransformJobName")
    job = self.sagemaker_backend.transform_jobs.get(name)
    if job is None:
        arn = FakeTransformJob.arn_formatter(name, self.current_account, self.region)
        raise ValidationError(f"Could not find transform job '{arn}'.")
    if job.transform_job_status == "InProgress":
        job.transform_job_status = "Stopping"
        key = (self.current_account, self.region, name)
        with _lock:
            _stop_requests.add(key)
            process = _processes.get(key)
        if process is not None:
            process.terminate()
    return EmptyResult()


def _finish(job: Any, status: str, reason: str | None = None) -> None:
    now = _now()
    job.transform_job_status = status
    job.transform_end_time = now
    job.last_modified_time = now
    job.failure_reason = reason


def _run_transform(runtime: Runtime, key: tuple[str, str, str]) -> None:
    account, region, name = key
    backend = sagemaker_backends[account][region]
    job = backend.transform_jobs[name]
    model = backend._models[job.model_name]
    permissions = RolePermissions(model.execution_role_arn)
    s3 = runtime.client("s3", region)
    work = runtime.settings.work_dir / "transform" / name
    try:
        _check_request(job)
        artifact = model.primary_container.get("ModelDataUrl")
        if not artifact:
            raise RuntimeError(f"ClientError: model {job.model_name} has no ModelDataUrl")
        _require(permissions, artifact, "s3:GetObject")
        (work / "in").mkdir(parents=True, exist_ok=True)
        try:
            s3.download_file(*split_s3_uri(artifact), str(work / "model.tar.gz"))
        except s3.exceptions.ClientError as err:
            code = err.response["Error"].get("Code", "Error")
            raise RuntimeError(f"ClientError: Unable to download model data {artifact} ({code})") from None
        inputs = list_inputs(s3, job.transform_input["DataSource"]["S3DataSource"], permissions)
        pairs = []
        for number, (uri, relative) in enumerate(inputs):
            _require(permissions, uri, "s3:GetObject")
            local = work / "in" / f"{number:06d}"
            s3.download_file(*split_s3_uri(uri), str(local))
            pairs.append((str(local), str(work / "out" / f"{number:06d}.out"), relative))
        (work / "jobs.json").write_text(json.dumps([p[:2] for p in pairs]))
        if not _run_algorithm(work, job.transform_input.get("ContentType", ""), key):
            _finish(job, "Stopped")
            return
        output = job.transform_output["S3OutputPath"].rstrip("/")
        for _, local_out, relative in pairs:
            target = f"{output}/{relative}.out"
            _require(permissions, target, "s3:PutObject")
            s3.upload_file(local_out, *split_s3_uri(target))
        _finish(job, "Completed")
        log.info("transform job %s completed: %d objects", name, len(pairs))
    except Exception as err:
        message = (
            str(err) if str(err).startswith(("ClientError", "AlgorithmError")) else f"AlgorithmError: {err}"
        )
        _finish(job, "Failed", message)
        log.warning("transform job %s failed: %s", name, message)
    finally:
        with _lock:
            _stop_requests.discard(key)


def _check_request(job: Any) -> None:
    """What the algorithm's serving container refuses, as the job's failure."""
    content_type = job.transform_input.get("ContentType", "")
    if content_type not in CONTENT_TYPES:
        raise RuntimeError(
            f"ClientError: 415 the object-detection algorithm accepts {' or '.join(CONTENT_TYPES)}, "
            f"not {content_type or 'no ContentType'}"
        )
    split = job.transform_input.get("SplitType", "None")
    if split not in (None, "None"):
        raise RuntimeError(f"ClientError: 400 SplitType {split} cuts an image apart: use None for images")


def _run_algorithm(work: Path, content_type: str, key: tuple[str, str, str]) -> bool:
    """Answer every input in the ML tools environment; False when the job was stopped."""
    command = [
        Runtime.get().settings.ml_python,
        "-m",
        "emulator.batch_predict",
        "--model",
        str(work / "model.tar.gz"),
        "--jobs",
        str(work / "jobs.json"),
        "--content-type",
        content_type,
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "include"), PYTHONUNBUFFERED="1")
    with _lock:
        if key in _stop_requests:
            return False
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        _processes[key] = process
    try:
        output, _ = process.communicate()
    finally:
        with _lock:
            _processes.pop(key, None)
            stopped = key in _stop_requests
    if stopped:
        return False
    if process.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        reason = next((line for line in lines if line.startswith("ClientError")), None)
        raise RuntimeError(reason or f"AlgorithmError: {lines[-1] if lines else process.returncode}")
    return True


def register() -> None:
    """Replace moto's instant transform jobs with ones that run the model; add StopTransformJob."""
    SageMakerResponse.create_transform_job = _create_transform_job
    SageMakerResponse.stop_transform_job = _stop_transform_job
