"""Training and tuning jobs that do real work, for the emulator.

moto 5.2.5 completes a training job the moment it is created and writes no artefact. Here a
training job moves InProgress → Completed (or Failed/Stopped) over real time: the channels'
augmented manifests and their images are staged from the emulated S3, the ML tools environment
(mxnet, a separate Python) trains or builds the SSD (``python -m ml_tools.train``), its log goes to
CloudWatch Logs as SageMaker's does, ``validation:mAP`` is read from the log with the built-in
algorithm's metric regex, and ``model.tar.gz`` is uploaded to ``<S3OutputPath>/<job>/output/``.

The job acts as its execution role (``RoleArn``), as on AWS: the role's permission policies must
allow ``s3:GetObject`` on each augmented manifest and on every image it lists (checked as the channels
are staged), and ``s3:PutObject`` on ``<S3OutputPath>/<job>/output/model.tar.gz`` (checked when the
model is uploaded); otherwise the job fails with SageMaker's ``ClientError`` wording. A refused read
is reported as users quote it, "ClientError: Data download failed:Unable to download object <uri>
(AccessDenied: Access Denied)" (aws/amazon-sagemaker-examples#4384); the emulator adds the role and
the action it lacks. The refused upload follows the same form ("Model upload failed:Unable to upload
object <uri> (AccessDenied: Access Denied)"); its exact AWS wording is not confirmed.

Incremental training (the SageMaker Developer Guide, "Object Detection - MXNet", section
Incremental Training): a channel named ``model`` with ContentType ``application/x-sagemaker-model``
holds the ``model.tar.gz`` of an earlier built-in object-detection job, read in File mode (API
reference, ``Channel.InputMode``). The emulator stages it as its execution role (``s3:ListBucket``,
``s3:GetObject``) and the trainer starts from its weights; a model channel of another content type
or input mode, or whose model's ``base_network`` or ``num_classes`` differ from the job's (the two
hyperparameters AWS says must match), fails the job with a ``ClientError``. The exact
wording AWS gives for those two failures is not documented; the emulator's names the cause.

A tuning job runs its training jobs one at a time through the same path, sampling the request's
ranges, and reports the best as ``BestTrainingJob``. When none succeeds it fails with "No training
job succeeded after <n> attempts. Please take a look at the training job failures to get more
details." (the reason quoted in aws/amazon-sagemaker-examples#2436 and #2437).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse

from emulator.extension.groundtruth import split_s3_uri
from emulator.extension.role_permissions import RolePermissions
from emulator.extension.runtime import Runtime
from emulator.settings import REPO_ROOT

log = logging.getLogger("emulator.training")

METRIC_NAME = "validation:mAP"
METRIC_REGEX = r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\(([0-9.eE+-]+)\)"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MODEL_CHANNEL = "model"
MODEL_CONTENT_TYPE = "application/x-sagemaker-model"
CUSTOMER_ERROR_EXIT = 2  # the trainer's exit status for bad input (ml_tools.train)
_stop_requests: set[tuple[str, str, str]] = set()
_lock = threading.Lock()

_original_create_training_job = SageMakerResponse.create_training_job
_original_create_tuning_job = SageMakerResponse.create_hyper_parameter_tuning_job
_original_describe_tuning_job = SageMakerResponse.describe_hyper_parameter_tuning_job
_original_describe_training_job = SageMakerResponse.describe_training_job


def _now() -> datetime:
    return datetime.now(UTC)


# --- training jobs --------------------------------------------------------------------------


def check_spot_settings(stopping: dict[str, Any] | None, spot: bool | None) -> None:
    """Refuse what SageMaker refuses in a stopping condition, with its messages: a
    ``MaxWaitTimeInSeconds`` without managed spot training, and spot training without one at least
    ``MaxRuntimeInSeconds`` (quoted in aws/amazon-sagemaker-examples#869, Kenza-AI/sagify#111)."""
    stopping = stopping or {}
    wait, runtime = stopping.get("MaxWaitTimeInSeconds"), stopping.get("MaxRuntimeInSeconds")
    if wait is not None and not spot:
        raise ValidationError(
            "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to true"
        )
    if spot and (wait is None or (runtime is not None and int(wait) < int(runtime))):
        raise ValidationError(
            "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
            "MaxRuntimeInSeconds"
        )


def _create_training_job(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("TrainingJobName")
    check_spot_settings(self._get_param("StoppingCondition"), self._get_param("EnableManagedSpotTraining"))
    backend = self.sagemaker_backend
    if name in backend.training_jobs:
        raise ResourceInUseException(
            f"Training job names must be unique within an AWS account and region, and a training job "
            f"with this name already exists ({backend.training_jobs[name].arn})"
        )
    for channel in self._get_param("InputDataConfig") or []:
        source = channel["DataSource"].get("S3DataSource", {})
        if channel["ChannelName"] == MODEL_CHANNEL:
            continue  # incremental training: checked when the job stages it, as the algorithm does
        if source.get("S3DataType") != "AugmentedManifestFile":
            raise ValidationError(
                f"channel {channel['ChannelName']}: the emulator trains from AugmentedManifestFile "
                f"channels only, not {source.get('S3DataType')}"
            )
    result = _original_create_training_job(self)
    job = backend.training_jobs[name]
    job.training_job_status = "InProgress"
    job.secondary_status = "Starting"
    job.final_metric_data_list = []
    job.model_artifacts = None
    job.training_end_time = None
    job.algorithm_specification["MetricDefinitions"] = [{"Name": METRIC_NAME, "Regex": METRIC_REGEX}]
    runtime = Runtime.get()
    key = (self.current_account, self.region, name)
    runtime.spawn(f"training-{name}", lambda: _run_training(runtime, key))
    return result


def _stop_training_job(self: SageMakerResponse) -> EmptyResult:
    name = self._get_param("TrainingJobName")
    job = self.sagemaker_backend.training_jobs.get(name)
    if job is None:
        raise ValidationError(f"Requested resource not found: training job {name}")
    if job.training_job_status == "InProgress":
        job.training_job_status = "Stopping"
        with _lock:
            _stop_requests.add((self.current_account, self.region, name))
    return EmptyResult()


def _stop_tuning_job(self: SageMakerResponse) -> EmptyResult:
    """StopHyperParameterTuningJob: Stopping, its running training job stopped, then Stopped (as AWS
    does: "stops all running training jobs"); an unknown job answers ValidationException, as the
    other Stop… calls here do."""
    name = self._get_param("HyperParameterTuningJobName")
    job = self.sagemaker_backend.hyper_parameter_tuning_jobs.get(name)
    if job is None:
        raise ValidationError(f"Requested resource not found: hyper-parameter tuning job {name}")
    if job.hyper_parameter_tuning_job_status == "InProgress":
        job.hyper_parameter_tuning_job_status = "Stopping"
        with _lock:
            _stop_requests.add((self.current_account, self.region, f"tuning:{name}"))
    return EmptyResult()


def _transition(job: Any, status: str, message: str) -> None:
    now = _now()
    transitions = job.secondary_status_transitions
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
    job.secondary_status = status
    job.last_modified_time = now


def _finish(job: Any, status: str, reason: str | None = None) -> None:
    now = _now()
    job.training_job_status = status
    job.training_end_time = now
    job.last_modified_time = now
    if reason:
        job.failure_reason = reason
    transitions = job.secondary_status_transitions
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    job.secondary_status = {"Completed": "Completed", "Failed": "Failed"}.get(status, "Stopped")


def access_denied(uri: str, permissions: RolePermissions, action: str) -> str:
    """SageMaker's FailureReason for an object its execution role may not read (``s3:GetObject``, a
    data download) or write (``s3:PutObject``, the model upload)."""
    bucket, key = split_s3_uri(uri)
    step, verb = ("Data download", "download") if action == "s3:GetObject" else ("Model upload", "upload")
    return (
        f"ClientError: {step} failed:Unable to {verb} object {uri} (AccessDenied: Access Denied). "
        f"The execution role {permissions.role_arn} is not allowed {action} on "
        f"arn:{permissions.partition}:s3:::{bucket}/{key}"
    )


def _require_read(permissions: RolePermissions | None, uri: str) -> None:
    bucket, key = split_s3_uri(uri)
    if permissions is not None and not permissions.allows_s3("s3:GetObject", bucket, key):
        raise RuntimeError(access_denied(uri, permissions, "s3:GetObject"))


def stage_channel(
    s3: Any, manifest_uri: str, attribute: str, dest: Path, permissions: RolePermissions | None = None
) -> Path:
    """Download an augmented manifest and its images; write a manifest of local paths.

    With ``permissions`` (the job's execution role), each object is read only if the role may.
    """
    _require_read(permissions, manifest_uri)
    bucket, key = split_s3_uri(manifest_uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except s3.exceptions.ClientError as err:
        raise RuntimeError(f"ClientError: cannot read the manifest {manifest_uri}: {err}") from None
    images = dest / "images"
    images.mkdir(parents=True, exist_ok=True)
    out_lines = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if attribute not in record:
            raise RuntimeError(f"ClientError: {manifest_uri} line {number} has no attribute {attribute!r}")
        ref = record["source-ref"]
        _require_read(permissions, ref)
        ib, ik = split_s3_uri(ref)
        local = images / (hashlib.sha1(ref.encode()).hexdigest()[:16] + Path(ik).suffix)
        if not local.exists():
            s3.download_file(ib, ik, str(local))
        record["source-ref"] = str(local)
        out_lines.append(json.dumps(record))
    manifest = dest / "channel.manifest"
    manifest.write_text("\n".join(out_lines) + "\n")
    return manifest


def stage_model_channel(
    s3: Any,
    channel: dict[str, Any],
    dest: Path,
    permissions: RolePermissions | None = None,
    job_input_mode: str = "File",
) -> Path:
    """Download the ``model`` channel (every object under its S3 prefix, as SageMaker does) and
    return the model.tar.gz among them; refuse another ContentType as the algorithm does, and a
    channel not in File mode (the API reference, Channel.InputMode: "To use a model for
    incremental training, choose File input mode"; a channel without one takes the job's)."""
    mode = channel.get("InputMode") or job_input_mode
    if mode != "File":
        raise RuntimeError(
            "ClientError: Unable to initialize the algorithm. Failed to validate input data "
            f"configuration: channel {MODEL_CHANNEL!r} is in {mode} mode; incremental training "
            "reads the model in File mode (set the channel's InputMode to File)"
        )
    content_type = channel.get("ContentType")
    if content_type != MODEL_CONTENT_TYPE:
        raise RuntimeError(
            "ClientError: Unable to initialize the algorithm. Failed to validate input data "
            f"configuration: channel {MODEL_CHANNEL!r} has ContentType {content_type!r}; incremental "
            f"training takes {MODEL_CONTENT_TYPE!r}"
        )
    source = channel["DataSource"]["S3DataSource"]
    uri = source["S3Uri"]
    bucket, prefix = split_s3_uri(uri)
    if source.get("S3DataType", "S3Prefix") == "S3Prefix":
        if permissions is not None and not permissions.allows_s3("s3:ListBucket", bucket):
            raise RuntimeError(
                f"ClientError: Data download failed:Unable to list objects under {uri} (AccessDenied: "
                f"Access Denied). The execution role {permissions.role_arn} is not allowed s3:ListBucket "
                f"on arn:{permissions.partition}:s3:::{bucket}"
            )
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    else:
        keys = [prefix]
    if not keys:
        raise RuntimeError(f"ClientError: Data download failed: no object under {uri} (the model channel)")
    dest.mkdir(parents=True, exist_ok=True)
    archives = []
    for key in keys:
        _require_read(permissions, f"s3://{bucket}/{key}")
        local = dest / Path(key).name
        s3.download_file(bucket, key, str(local))
        if local.name.endswith(".tar.gz"):
            archives.append(local)
    if len(archives) != 1:
        raise RuntimeError(
            f"ClientError: the model channel {uri} must hold one model.tar.gz output by SageMaker, "
            f"found {len(archives)}"
        )
    return archives[0]


class _LogSink:
    """Send a job's log lines to CloudWatch Logs, as SageMaker's algorithm containers do."""

    def __init__(self, runtime: Runtime, region: str, job_name: str) -> None:
        self.logs = runtime.client("logs", region)
        self.stream = f"{job_name}/algo-1-{int(time.time())}"
        try:
            self.logs.create_log_group(logGroupName=LOG_GROUP)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=self.stream)
        self.pending: list[dict[str, Any]] = []

    def write(self, line: str) -> None:
        self.pending.append({"timestamp": int(time.time() * 1000), "message": line})
        if len(self.pending) >= 50:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.logs.put_log_events(
                logGroupName=LOG_GROUP, logStreamName=self.stream, logEvents=self.pending
            )
            self.pending = []


def _run_training(runtime: Runtime, key: tuple[str, str, str]) -> None:
    account, region, name = key
    job = sagemaker_backends[account][region].training_jobs[name]
    settings = runtime.settings
    work = settings.work_dir / "training" / name
    work.mkdir(parents=True, exist_ok=True)
    s3 = runtime.client("s3", region)
    sink = _LogSink(runtime, region, name)
    permissions = RolePermissions(job.role_arn)  # the job acts as its execution role
    try:
        _transition(job, "Downloading", "Downloading input data")
        channels = {}
        model = None
        for channel in job.input_data_config:
            if channel["ChannelName"] == MODEL_CHANNEL:
                model = stage_model_channel(
                    s3,
                    channel,
                    work / MODEL_CHANNEL,
                    permissions,
                    job.algorithm_specification.get("TrainingInputMode", "File"),
                )
                continue
            source = channel["DataSource"]["S3DataSource"]
            attribute = source["AttributeNames"][-1]
            channels[channel["ChannelName"]] = stage_channel(
                s3, source["S3Uri"], attribute, work / channel["ChannelName"], permissions
            )
        missing = {"train", "validation"} - set(channels)
        if missing:
            raise RuntimeError(
                f"ClientError: the object-detection algorithm needs channels {sorted(missing)}"
            )
        hp_path = work / "hyperparameters.json"
        hp_path.write_text(json.dumps(job.hyper_parameters or {}))
        output = work / "model.tar.gz"
        command = [
            settings.ml_python,
            "-m",
            "ml_tools.train",
            "--mode",
            settings.training_mode,
            "--train",
            str(channels["train"]),
            "--validation",
            str(channels["validation"]),
            "--label-attribute",
            attribute,
            "--hyperparameters",
            str(hp_path),
            "--output",
            str(output),
            "--backbone",
            settings.training_backbone,
            "--max-seconds",
            str(settings.training_max_seconds),
        ]
        if model is not None:
            command += ["--model", str(model)]
        _transition(job, "Training", "Training image download completed. Training in progress.")
        job.training_start_time = _now()
        best = _run_container(command, sink, key)
        if best is None and job.training_job_status == "Stopping":
            _finish(job, "Stopped")
            return
        _transition(job, "Uploading", "Uploading generated training model")
        out_uri = f"{job.output_data_config['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
        bucket, out_key = split_s3_uri(out_uri)
        if not permissions.allows_s3("s3:PutObject", bucket, out_key):
            raise RuntimeError(access_denied(out_uri, permissions, "s3:PutObject"))
        s3.upload_file(str(output), bucket, out_key)
        job.model_artifacts = {"S3ModelArtifacts": out_uri}
        job.final_metric_data_list = [{"MetricName": METRIC_NAME, "Value": best, "Timestamp": _now()}]
        _finish(job, "Completed")
        log.info("training job %s completed, %s=%s", name, METRIC_NAME, best)
    except Exception as err:
        message = (
            str(err) if str(err).startswith(("ClientError", "AlgorithmError")) else f"AlgorithmError: {err}"
        )
        sink.write(message)
        _finish(job, "Failed", message)
        log.warning("training job %s failed: %s", name, message)
    finally:
        sink.flush()


def _run_container(command: list[str], sink: _LogSink, key: tuple[str, str, str]) -> float | None:
    """Run the ML tools trainer; stream its log; return the best validation mAP (None if stopped)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "include"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )
    pattern = re.compile(METRIC_REGEX)
    scores: list[float] = []
    last_lines: list[str] = []
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip("\n")
        sink.write(line)
        last_lines = [*last_lines[-4:], line]
        match = pattern.search(line)
        if match:
            scores.append(float(match.group(1)))
        with _lock:
            if key in _stop_requests:
                process.terminate()
    code = process.wait()
    with _lock:
        if key in _stop_requests:
            _stop_requests.discard(key)
            return None
    if code != 0:
        reason = next((line for line in reversed(last_lines) if line.strip()), f"exit code {code}")
        if code == CUSTOMER_ERROR_EXIT:  # bad input: SageMaker reports a customer error as ClientError
            raise RuntimeError(f"ClientError: {reason.removeprefix('error: ')}")
        raise RuntimeError(f"AlgorithmError: {reason}")
    if not scores:
        raise RuntimeError("AlgorithmError: the algorithm reported no validation mAP")
    return max(scores)


# --- tuning jobs ----------------------------------------------------------------------------


def _create_tuning_job(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("HyperParameterTuningJobName")
    if len(name) > 32:
        raise ValidationError(f"HyperParameterTuningJobName {name!r} is longer than 32 characters")
    definition = self._get_param("TrainingJobDefinition") or {}
    check_spot_settings(definition.get("StoppingCondition"), definition.get("EnableManagedSpotTraining"))
    result = _original_create_tuning_job(self)
    job = self.sagemaker_backend.hyper_parameter_tuning_jobs[name]
    job.hyper_parameter_tuning_job_status = "InProgress"
    job.hyper_parameter_tuning_end_time = None
    job.training_job_status_counters = dict.fromkeys(job.training_job_status_counters, 0)
    job.objective_status_counters = dict.fromkeys(job.objective_status_counters, 0)
    job.best_training_job = None
    job.OverallBestTrainingJob = None
    job.tuning_job_completion_details = None
    job.consumed_resources = None
    job.failure_reason = None
    runtime = Runtime.get()
    key = (self.current_account, self.region, name)
    runtime.spawn(f"tuning-{name}", lambda: _run_tuning(runtime, key))
    return result


def _describe_training_job(self: SageMakerResponse) -> ActionResult:
    """moto's description plus what AWS reports once a job ends: ``TrainingTimeInSeconds`` and
    ``BillableTimeInSeconds``. On spot capacity the billable time is the training time less the
    emulator's assumed spot discount (``EMULATOR_SPOT_SAVING``, default 0.7: AWS quotes up to 90%);
    AWS's figure depends on the spot price of the hour."""
    result = _original_describe_training_job(self)
    body = dict(result.result)
    job = self.sagemaker_backend.training_jobs.get(self._get_param("TrainingJobName"))
    if job is not None and job.training_end_time is not None and job.training_start_time is not None:
        start, end = (
            t if t.tzinfo else t.replace(tzinfo=UTC) for t in (job.training_start_time, job.training_end_time)
        )
        seconds = max(1, round((end - start).total_seconds()))
        body["TrainingTimeInSeconds"] = seconds
        saving = Runtime.get().settings.spot_saving if job.enable_managed_spot_training else 0.0
        body["BillableTimeInSeconds"] = max(1, round(seconds * (1 - saving)))
    if job is not None:
        body["EnableManagedSpotTraining"] = bool(job.enable_managed_spot_training)
        if job.checkpoint_config:
            body["CheckpointConfig"] = job.checkpoint_config
    return ActionResult(body)


def _describe_tuning_job(self: SageMakerResponse) -> ActionResult:
    result = _original_describe_tuning_job(self)
    body = {k: v for k, v in result.result.items() if v is not None}
    return ActionResult(body)


def sample_hyperparameters(ranges: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """One draw from a tuning job's parameter ranges (log-uniform where the scaling says so)."""
    values: dict[str, str] = {}
    for item in ranges.get("ContinuousParameterRanges", []):
        low, high = float(item["MinValue"]), float(item["MaxValue"])
        if item.get("ScalingType") in ("Logarithmic", "ReverseLogarithmic"):
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        values[item["Name"]] = f"{value:.6g}"
    for item in ranges.get("IntegerParameterRanges", []):
        values[item["Name"]] = str(rng.randint(int(item["MinValue"]), int(item["MaxValue"])))
    for item in ranges.get("CategoricalParameterRanges", []):
        values[item["Name"]] = rng.choice(item["Values"])
    return values


def _run_tuning(runtime: Runtime, key: tuple[str, str, str]) -> None:
    account, region, name = key
    job = sagemaker_backends[account][region].hyper_parameter_tuning_jobs[name]
    config = job.hyper_parameter_tuning_job_config
    definition = job.training_job_definition
    requested = int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])
    count = min(requested, runtime.settings.max_tuning_jobs)
    if count < requested:
        log.warning(
            "tuning job %s asks for %d training jobs; the emulator runs %d (EMULATOR_MAX_TUNING_JOBS)",
            name,
            requested,
            count,
        )
    parallel = int(config["ResourceLimits"].get("MaxParallelTrainingJobs", 1))
    if parallel > 1:
        log.warning(
            "tuning job %s asks for %d parallel jobs; the emulator runs them one at a time", name, parallel
        )
    objective = config["HyperParameterTuningJobObjective"]
    sagemaker = runtime.client("sagemaker", region)
    rng = random.Random(name)
    results: list[dict[str, Any]] = []
    for index in range(count):
        if (account, region, f"tuning:{name}") in _stop_requests:
            break
        tuned = sample_hyperparameters(config.get("ParameterRanges", {}), rng)
        suffix = hashlib.sha1(f"{name}-{index}".encode()).hexdigest()[:8]
        training_name = f"{name}-{index + 1:03d}-{suffix}"
        request = {
            "TrainingJobName": training_name,
            "HyperParameters": {**definition.get("StaticHyperParameters", {}), **tuned},
            "AlgorithmSpecification": {
                k: v for k, v in definition["AlgorithmSpecification"].items() if k != "MetricDefinitions"
            },
            "RoleArn": definition["RoleArn"],
            "InputDataConfig": definition["InputDataConfig"],
            "OutputDataConfig": definition["OutputDataConfig"],
            "ResourceConfig": definition["ResourceConfig"],
            "StoppingCondition": definition["StoppingCondition"],
            "Tags": [{"Key": "emulator:tuning-job", "Value": name}],
        }
        for spot_field in ("EnableManagedSpotTraining", "CheckpointConfig"):
            if definition.get(spot_field):
                request[spot_field] = definition[spot_field]
        job.training_job_status_counters["InProgress"] += 1
        sagemaker.create_training_job(**request)
        while True:
            described = sagemaker.describe_training_job(TrainingJobName=training_name)
            if described["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
                break
            if (account, region, f"tuning:{name}") in _stop_requests and described[
                "TrainingJobStatus"
            ] == "InProgress":
                sagemaker.stop_training_job(TrainingJobName=training_name)
            time.sleep(0.5)
        job.training_job_status_counters["InProgress"] -= 1
        status = described["TrainingJobStatus"]
        metric = next(
            (
                m["Value"]
                for m in described.get("FinalMetricDataList", [])
                if m["MetricName"] == objective["MetricName"]
            ),
            None,
        )
        if status == "Completed" and metric is not None:
            job.training_job_status_counters["Completed"] += 1
            job.objective_status_counters["Succeeded"] += 1
        else:
            job.training_job_status_counters["NonRetryableError" if status == "Failed" else "Stopped"] += 1
            job.objective_status_counters["Failed"] += 1
        results.append({"described": described, "tuned": tuned, "metric": metric})
    scored = [r for r in results if r["metric"] is not None]
    now = _now()
    job.hyper_parameter_tuning_end_time = now
    job.last_modified_time = now
    with _lock:
        stopped = (account, region, f"tuning:{name}") in _stop_requests
        _stop_requests.discard((account, region, f"tuning:{name}"))
    if stopped:
        job.hyper_parameter_tuning_job_status = "Stopped"
        log.info("tuning job %s stopped", name)
        return
    if not scored:
        job.hyper_parameter_tuning_job_status = "Failed"
        job.failure_reason = (
            f"No training job succeeded after {len(results)} attempts. "
            "Please take a look at the training job failures to get more details."
        )
        return
    pick = max if objective["Type"] == "Maximize" else min
    best = pick(scored, key=lambda r: r["metric"])
    described = best["described"]
    job.best_training_job = {
        "TrainingJobName": described["TrainingJobName"],
        "TrainingJobArn": described["TrainingJobArn"],
        "TuningJobName": name,
        "CreationTime": described["CreationTime"],
        "TrainingStartTime": described.get("TrainingStartTime", described["CreationTime"]),
        "TrainingEndTime": described.get("TrainingEndTime", now),
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": best["tuned"],
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "Type": objective["Type"],
            "MetricName": objective["MetricName"],
            "Value": best["metric"],
        },
        "ObjectiveStatus": "Succeeded",
    }
    job.OverallBestTrainingJob = job.best_training_job
    job.hyper_parameter_tuning_job_status = "Completed"
    log.info("tuning job %s completed; best %s", name, described["TrainingJobName"])


def register() -> None:
    """Replace moto's instant training and tuning jobs with ones that do the work."""
    SageMakerResponse.create_training_job = _create_training_job
    SageMakerResponse.stop_training_job = _stop_training_job
    SageMakerResponse.stop_hyper_parameter_tuning_job = _stop_tuning_job
    SageMakerResponse.create_hyper_parameter_tuning_job = _create_tuning_job
    SageMakerResponse.describe_hyper_parameter_tuning_job = _describe_tuning_job
    SageMakerResponse.describe_training_job = _describe_training_job
