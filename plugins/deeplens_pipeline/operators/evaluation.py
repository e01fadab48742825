"""Evaluate a model on the fixed holdout with a SageMaker batch transform job, then score it here.

The task creates a SageMaker model from the artefact (the built-in object-detection image, as
training used) unless this run already did, and one batch transform job over the holdout's images
(a ManifestFile of their S3 URIs; ContentType image/jpeg, SplitType None: one request per image).
It waits in the triggerer, then reads each image's ``.out`` answer, computes VOC AP per class and
mAP (``deeplens_pipeline.evaluation``), writes ``evaluation/<run>/<label>.json`` to the bucket and
returns the metrics.

Names derive from the run (``naming.job_name``), so a retried task re-attaches to its transform job
instead of paying for a second one, and finds its model instead of failing on it (the provider's
``SageMakerTransformOperator`` re-creates the model on a retry and fails: apache/airflow#39502).
Nothing heavy is imported when the DAG is parsed: boto3 and the provider come with the task.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import Any

from deeplens_pipeline import evaluation
from deeplens_pipeline.airflow_compat import AirflowException, AirflowFailException
from deeplens_pipeline.groundtruth import parse_manifest
from deeplens_pipeline.layout import run_segment, split_s3_uri
from deeplens_pipeline.naming import RunScope, job_name
from deeplens_pipeline.operators.base import PipelineOperator, run_config, run_scope
from deeplens_pipeline.training import object_detection_image

RUNNING = ("InProgress", "Stopping")
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
"""The algorithm serves on CPU instances (C5, M5) as well as GPU ones; one holdout is small."""
_LABEL = re.compile(r"^[a-z0-9]{1,16}$")


def evaluation_name(scope: RunScope, label: str) -> str:
    """The model's and the transform job's name for ``label`` in this run (≤ 63 characters)."""
    return job_name(f"eval-{label}", scope)


def evaluation_prefix(run_id: str, label: str) -> str:
    """Where this run's evaluation of ``label`` keeps its input manifest and predictions."""
    return f"evaluation/{run_segment(run_id)}/{label}/"


def metrics_key(run_id: str, label: str) -> str:
    """The metrics document of this run's evaluation of ``label``."""
    return f"evaluation/{run_segment(run_id)}/{label}.json"


def transform_request(
    name: str, input_manifest_uri: str, output_uri: str, instance_type: str
) -> dict[str, Any]:
    """CreateTransformJob's request: one image per request, the algorithm's JSON back."""
    return {
        "TransformJobName": name,
        "ModelName": name,
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": input_manifest_uri}},
            "ContentType": "image/jpeg",
            "SplitType": "None",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": 1},
    }


class EvaluateModelOperator(PipelineOperator):
    """Score ``model_artifact`` (a model.tar.gz) on ``holdout_manifest`` (the split's validation
    manifest URI) with a batch transform job; ``model_label`` ("candidate", "current") names the result.
    ``instance_type`` defaults to ``params.evaluation_instance_type``.

    Returns ``{"label", "map", "per_class", "worst_misses", "images", "model_artifact",
    "transform_job", "metrics_uri", "predictions_uri"}``.
    """

    template_fields = ("model_artifact", "holdout_manifest")
    ui_color = "#ededed"

    def __init__(
        self,
        *,
        model_artifact: Any,
        holdout_manifest: Any,
        model_label: str = "candidate",
        instance_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not _LABEL.match(model_label):
            raise ValueError(f"model_label must be 1-16 lower-case letters or digits, not {model_label!r}")
        self.model_artifact = model_artifact
        self.holdout_manifest = holdout_manifest
        self.model_label = model_label
        self.instance_type = instance_type
        # The image the model is served with: the run's training image unless set (the current
        # model is served with the image its registry version names).
        self.serving_image: str | None = None

    def _hook(self, config: dict[str, Any]) -> Any:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook  # boto3: at run time

        return SageMakerHook(aws_conn_id=self.aws_conn_id, region_name=config["region"])

    def _holdout(self, config: dict[str, Any]) -> list[Any]:
        bucket, key = split_s3_uri(self.holdout_manifest)
        body = self.s3(config).read_key(key, bucket)
        images = list(
            parse_manifest(
                body.splitlines(), config["label_attribute"], config["classes"], self.holdout_manifest
            )
        )
        if not images:
            raise AirflowFailException(
                f"{self.holdout_manifest} lists no labelled image: nothing to evaluate on"
            )
        return images

    def _ensure_model(self, hook: Any, name: str, config: dict[str, Any]) -> None:
        from deeplens_pipeline.hooks.groundtruth import describe_or_none

        existing = describe_or_none(hook.describe_model, name)
        if existing is None:
            self.log.info("Creating model %s from %s", name, self.model_artifact)
            hook.create_model(
                {
                    "ModelName": name,
                    "ExecutionRoleArn": config["role_arn"],
                    "PrimaryContainer": {
                        "Image": self.serving_image
                        or object_detection_image(config["region"], config.get("training_image", "")),
                        "ModelDataUrl": self.model_artifact,
                    },
                }
            )
            return
        found = existing.get("PrimaryContainer", {}).get("ModelDataUrl")
        if found != self.model_artifact:
            raise AirflowFailException(
                f"Model {name} exists with {found}, not {self.model_artifact}: this run already evaluated "
                f"another {self.model_label} model; trigger a new run"
            )
        self.log.info("Model %s exists (%s): reusing it", name, found)

    def execute(self, context: Any) -> dict[str, Any]:
        from deeplens_pipeline.hooks.groundtruth import describe_or_none

        config = run_config(context)
        name = evaluation_name(run_scope(context), self.model_label)
        hook = self._hook(config)
        self._ensure_model(hook, name, config)
        existing = describe_or_none(hook.describe_transform_job, name)
        if existing is None:
            images = self._holdout(config)
            prefix = evaluation_prefix(context["run_id"], self.model_label)
            manifest_key = f"{prefix}input.manifest"
            body = evaluation.transform_manifest([i.source_ref for i in images])
            self.s3(config).load_string(body, manifest_key, config["bucket"], replace=True)
            request = transform_request(
                name,
                f"s3://{config['bucket']}/{manifest_key}",
                f"s3://{config['bucket']}/{prefix}predictions/",
                self.instance_type or config.get("evaluation_instance_type") or DEFAULT_INSTANCE_TYPE,
            )
            self.log.info("Transform job %s: %d holdout images through %s", name, len(images), name)
            hook.create_transform_job(request, wait_for_completion=False)
        else:
            status = existing["TransformJobStatus"]
            self.log.info("Transform job %s exists (%s): re-attaching, not starting another", name, status)
            if status == "Completed":
                return self._score(context, config, existing)
            if status not in RUNNING:
                raise self._terminal(name, status, existing.get("FailureReason"))
        self._defer(name, config)
        return {}  # not reached: defer raises

    def _defer(self, name: str, config: dict[str, Any]) -> None:
        from deeplens_pipeline.triggers.sagemaker import SageMakerJobTrigger

        poll = config["poll_seconds"]
        attempts = max(1, math.ceil((config["max_runtime_hours"] * 3600 + 3600) / poll))
        self.defer(
            trigger=SageMakerJobTrigger(
                job_name=name,
                job_type="Transform",
                waiter_delay=poll,
                waiter_max_attempts=attempts,
                aws_conn_id=self.aws_conn_id,
                region_name=config["region"],
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=poll * attempts),
        )

    def _terminal(self, name: str, status: str, reason: str | None) -> AirflowFailException:
        return AirflowFailException(
            f"Transform job {name} is {status}: {reason or 'no reason given'}. "
            "Its name cannot be used again: trigger a new DAG run after fixing the cause."
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: score the job's answers, or fail with its reason."""
        config = run_config(context)
        name = evaluation_name(run_scope(context), self.model_label)
        job = self._hook(config).describe_transform_job(name)
        status = job["TransformJobStatus"]
        if status in RUNNING:
            raise AirflowException(f"Transform job {name} is still {status}: {event}")
        if status != "Completed":
            raise self._terminal(name, status, job.get("FailureReason"))
        return self._score(context, config, job)

    def _score(self, context: Any, config: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
        images = self._holdout(config)
        output = job["TransformOutput"]["S3OutputPath"]
        s3 = self.s3(config)
        detections = {}
        for image in images:
            uri = evaluation.prediction_uri(image.source_ref, output)
            bucket, key = split_s3_uri(uri)
            if not s3.check_for_key(key, bucket):
                raise AirflowFailException(f"Transform job {job['TransformJobName']} wrote no {uri}")
            detections[image.source_ref] = evaluation.parse_prediction(
                s3.read_key(key, bucket), len(config["classes"]), uri
            )
        result = evaluation.evaluate(detections, images, config["classes"]).as_dict()
        key = metrics_key(context["run_id"], self.model_label)
        document = {
            "label": self.model_label,
            **result,
            "model_artifact": self.model_artifact,
            "holdout_manifest": self.holdout_manifest,
            "transform_job": job["TransformJobName"],
            "predictions_uri": output,
            "metrics_uri": f"s3://{config['bucket']}/{key}",
        }
        s3.load_string(json.dumps(document, indent=1), key, config["bucket"], replace=True)
        self.log.info(
            "%s model: holdout mAP %.4f over %d images; AP per class %s",
            self.model_label,
            result["map"],
            result["images"],
            {n: c["ap"] for n, c in result["per_class"].items()},
        )
        return document


def no_current_model(reason: str) -> dict[str, Any]:
    """``evaluate_current``'s result when there is nothing to compare with: no job ran."""
    return {
        "label": "current",
        "map": None,
        "per_class": {},
        "images": 0,
        "model_artifact": None,
        "no_current_model": True,
        "reason": reason,
    }


class EvaluateCurrentModelOperator(EvaluateModelOperator):
    """Score the model the device should be running (the registry's newest Approved version) on the
    same holdout as the candidate.

    When the registry has no Approved version, or that version was trained for other classes (its
    detections would not mean the same), no job runs and the result says so
    (:func:`no_current_model`: ``map`` None, ``reason``): the gate then applies ``min_map`` only.
    Otherwise returns :class:`EvaluateModelOperator`'s result with ``version_arn`` and ``version``.
    """

    template_fields = ("holdout_manifest",)

    def __init__(self, *, holdout_manifest: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_label", "current")
        super().__init__(model_artifact=None, holdout_manifest=holdout_manifest, **kwargs)

    def _current(self, context: Any, config: dict[str, Any]) -> tuple[str, Any]:
        from deeplens_pipeline.registry import current_model, group_name

        scope = run_scope(context)
        group = group_name(scope.environment, scope.dag_id)
        return group, current_model(self._hook(config).get_conn(), group)

    def execute(self, context: Any) -> dict[str, Any]:
        from deeplens_pipeline.hooks.groundtruth import describe_or_none

        config = run_config(context)
        group, current = self._current(context, config)
        if current is None:
            reason = f"no current model: no Approved version in model package group {group} yet"
            self.log.info("%s; the gate applies min_map only", reason)
            return no_current_model(reason)
        if current.classes != list(config["classes"]):
            reason = (
                f"no comparable current model: {current.arn} was trained for classes "
                f"{current.classes or '(not recorded)'}, this run's are {config['classes']}"
            )
            self.log.info("%s; the gate applies min_map only", reason)
            return no_current_model(reason)
        # A retry evaluates what the first try started on, even if another version was approved since.
        started = describe_or_none(
            self._hook(config).describe_model, evaluation_name(run_scope(context), self.model_label)
        )
        self.model_artifact = (
            started["PrimaryContainer"]["ModelDataUrl"] if started else current.model_artifact
        )
        self.serving_image = current.image or None
        self.log.info(
            "Current model: %s (version %s), %s, served with %s",
            current.arn, current.version, self.model_artifact, self.serving_image or "the run's image",
        )  # fmt: skip
        return self._with_version(super().execute(context), current)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        config = run_config(context)
        model = self._hook(config).describe_model(evaluation_name(run_scope(context), self.model_label))
        self.model_artifact = model["PrimaryContainer"]["ModelDataUrl"]
        result = super().execute_complete(context, event)
        _, current = self._current(context, config)
        return self._with_version(result, current)

    def _with_version(self, result: dict[str, Any], current: Any) -> dict[str, Any]:
        if current is not None and current.model_artifact == self.model_artifact:
            return {**result, "version_arn": current.arn, "version": current.version}
        return {**result, "version_arn": None, "version": None}
