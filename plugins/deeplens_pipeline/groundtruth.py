"""Ground Truth bounding-box labelling: requests, worker UI, and the output manifest (no Airflow).

No Airflow operator, sensor, trigger or boto3 waiter exists for labelling jobs; this module builds
the CreateLabelingJob request from the DAG's parameters and reads what the job writes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

# Accounts that own the built-in PRE-/ACS-BoundingBox Lambda functions, by region.
BUILTIN_LAMBDA_ACCOUNTS = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}
LABEL_CONFIG_VERSION = "2018-11-28"
# Task availability limit (HumanTaskConfig.TaskAvailabilityLifetimeInSeconds, botocore's model):
# 30 days for private and vendor work teams (12 hours for the public crowd, which is not supported).
MAX_AVAILABILITY_SECONDS = 30 * 24 * 3600
MIN_AVAILABILITY_SECONDS = 60
# The CORS rule AWS's "CORS Requirement for Input Image Data" page gives for the buckets holding a
# labelling job's images (docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html): without a
# rule like it, the workers' tasks fail. Only console-created jobs get one automatically.
LABELING_CORS_RULE: dict[str, Any] = {
    "AllowedHeaders": [],
    "AllowedMethods": ["GET"],
    "AllowedOrigins": ["*"],
    "ExposeHeaders": ["Access-Control-Allow-Origin"],
}
DIGEST_KEY = "deeplens-source-sha256"
TERMINAL_OK = "Completed"
TERMINAL_BAD = ("Failed", "Stopped")

# The worker UI. Its {{ }} are Liquid, evaluated by Ground Truth: this text must never pass
# through Jinja (Airflow templating), so it is uploaded as-is by the operator's execute().
BOUNDING_BOX_TEMPLATE = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-bounding-box
    name="boundingBox"
    src="{{ task.input.taskObject | grant_read_access }}"
    header="{{ task.input.header }}"
    labels="{{ task.input.labels | to_json | escape }}"
  >
    <full-instructions header="Bounding box instructions">
      <p>Draw one tight box around each object of the listed classes. Include the whole object,
      nothing else. If there is no such object, submit without a box.</p>
    </full-instructions>
    <short-instructions>
      <p>One tight box per object; every visible object; nothing if there is none.</p>
    </short-instructions>
  </crowd-bounding-box>
</crowd-form>
"""


class GroundTruthError(ValueError):
    """A labelling request or output cannot be used; the message says where and why."""


def builtin_lambda_arns(region: str) -> tuple[str, str]:
    """The built-in bounding-box pre-annotation and consolidation Lambda ARNs for ``region``."""
    account = BUILTIN_LAMBDA_ACCOUNTS.get(region)
    if account is None:
        raise GroundTruthError(
            f"params.region: Ground Truth's built-in bounding-box task is not offered in {region}; "
            f"use one of {', '.join(sorted(BUILTIN_LAMBDA_ACCOUNTS))}"
        )
    base = f"arn:aws:lambda:{region}:{account}:function"
    return f"{base}:PRE-BoundingBox", f"{base}:ACS-BoundingBox"


def task_availability_seconds(timeout_days: float) -> int:
    """How long each task stays offered to a private or vendor team: the labelling wait, at most
    30 days (the public crowd, with its 12-hour limit, is refused by ``check_params``)."""
    return max(MIN_AVAILABILITY_SECONDS, min(MAX_AVAILABILITY_SECONDS, int(timeout_days * 24 * 3600)))


def allows_labeling(rule: dict[str, Any]) -> bool:
    """Whether a bucket CORS rule lets the workers' browsers GET images from any origin."""
    return "GET" in rule.get("AllowedMethods", []) and "*" in rule.get("AllowedOrigins", [])


def cors_with_labeling_rule(rules: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The bucket's CORS rules plus :data:`LABELING_CORS_RULE`, or None when a rule already allows it.

    The bucket's own rules are kept, in order (S3 applies the first matching rule).
    """
    if any(allows_labeling(rule) for rule in rules):
        return None
    return [*rules, dict(LABELING_CORS_RULE)]


def label_category_config(classes: Iterable[str]) -> str:
    """The label category configuration document; class_id is the index in ``classes``."""
    return json.dumps(
        {"document-version": LABEL_CONFIG_VERSION, "labels": [{"label": c} for c in classes]}, indent=1
    )


def input_manifest(image_uris: Iterable[str]) -> str:
    """An input manifest: one ``{"source-ref": "s3://..."}`` line per image."""
    return "".join(json.dumps({"source-ref": uri}) + "\n" for uri in image_uris)


def create_labeling_job_request(
    *,
    job_name: str,
    label_attribute: str,
    input_manifest_uri: str,
    output_uri: str,
    role_arn: str,
    workteam_arn: str,
    label_config_uri: str,
    ui_template_uri: str,
    region: str,
    task_title: str,
    task_description: str,
    workers_per_image: int = 1,
    task_time_limit_seconds: int = 300,
    task_availability_seconds: int = 10 * 24 * 3600,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateLabelingJob request for a built-in bounding-box job."""
    if label_attribute.endswith(("-metadata", "-ref")):
        raise GroundTruthError(
            f"params.label_attribute: {label_attribute!r} must not end in '-metadata' or '-ref'"
        )
    pre_lambda, acs_lambda = builtin_lambda_arns(region)
    request: dict[str, Any] = {
        "LabelingJobName": job_name,
        "LabelAttributeName": label_attribute,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": input_manifest_uri}}},
        "OutputConfig": {"S3OutputPath": output_uri},
        "RoleArn": role_arn,
        "LabelCategoryConfigS3Uri": label_config_uri,
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": ui_template_uri},
            "PreHumanTaskLambdaArn": pre_lambda,
            "TaskKeywords": ["Images", "bounding box", "object detection"],
            "TaskTitle": task_title,
            "TaskDescription": task_description,
            "NumberOfHumanWorkersPerDataObject": workers_per_image,
            "TaskTimeLimitInSeconds": task_time_limit_seconds,
            "TaskAvailabilityLifetimeInSeconds": task_availability_seconds,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": acs_lambda},
        },
    }
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    return request


def output_manifest_uri(output_uri: str, job_name: str) -> str:
    """Where the job writes its augmented output manifest."""
    return f"{output_uri.rstrip('/')}/{job_name}/manifests/output/output.manifest"


@dataclass
class LabelledImage:
    """One line of an augmented manifest, in the classes' own ids."""

    source_ref: str
    width: int
    height: int
    depth: int
    boxes: list[dict[str, int]]  # class_id, left, top, width, height
    # SHA-256 of the source photo the boxes were drawn on (None for labels older than that record):
    # a photo replaced under the same name loses its boxes (see :func:`reconcile_with_images`).
    digest: str | None = None

    def to_line(self, label_attribute: str, classes: list[str], job_name: str = "") -> str:
        """This image as an augmented manifest line (Ground Truth's format)."""
        metadata: dict[str, Any] = {
            "objects": [{"confidence": 1.0} for _ in self.boxes],
            "class-map": {str(i): name for i, name in enumerate(classes)},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
        }
        if job_name:
            metadata["job-name"] = f"labeling-job/{job_name}"
        record: dict[str, Any] = {
            "source-ref": self.source_ref,
            label_attribute: {
                "image_size": [{"width": self.width, "height": self.height, "depth": self.depth}],
                "annotations": self.boxes,
            },
            f"{label_attribute}-metadata": metadata,
        }
        if self.digest:  # an extra key, as Ground Truth's own manifests carry; training ignores it
            record[DIGEST_KEY] = self.digest
        return json.dumps(record, separators=(",", ":"))


@dataclass
class ManifestSummary:
    """What a manifest holds: images, boxes per class, images with no box."""

    images: int = 0
    boxes: Counter[str] = field(default_factory=Counter)
    empty: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {"images": self.images, "empty": self.empty, "boxes": dict(sorted(self.boxes.items()))}


def parse_manifest(
    lines: Iterable[str], label_attribute: str, classes: list[str], source: str = "manifest"
) -> Iterator[LabelledImage]:
    """Read an augmented manifest, mapping each job's class-map onto ``classes`` by name.

    Errors name ``source`` and the 1-based line. Lines without the attribute are skipped (not yet
    labelled); a class name outside ``classes`` is an error, since training would mislabel it.
    """
    index = {name: i for i, name in enumerate(classes)}
    for number, raw in enumerate(lines, start=1):
        raw = raw.strip()
        if not raw:
            continue
        where = f"{source}, line {number}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise GroundTruthError(f"{where}: not JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict) or "source-ref" not in record:
            raise GroundTruthError(f"{where}: no 'source-ref'")
        label = record.get(label_attribute)
        if label is None:
            continue
        try:
            size = label["image_size"][0]
            annotations = label["annotations"]
            class_map = record.get(f"{label_attribute}-metadata", {}).get("class-map", {})
            boxes = []
            for box in annotations:
                job_class = str(box["class_id"])
                name = class_map.get(job_class, classes[int(job_class)] if not class_map else None)
                if name not in index:
                    raise GroundTruthError(
                        f"{where}: class {name or job_class!r} is not in params.classes {classes}"
                    )
                boxes.append(
                    {
                        "class_id": index[name],
                        **{k: round(float(box[k])) for k in ("left", "top", "width", "height")},
                    }
                )
            yield LabelledImage(
                source_ref=record["source-ref"],
                width=int(size["width"]),
                height=int(size["height"]),
                depth=int(size.get("depth", 3)),
                boxes=boxes,
                digest=record.get(DIGEST_KEY) or None,
            )
        except (KeyError, IndexError, TypeError, ValueError) as err:
            if isinstance(err, GroundTruthError):
                raise
            raise GroundTruthError(
                f"{where}: attribute {label_attribute!r} is not a bounding-box label ({err!r})"
            ) from None


def summarise(images: Iterable[LabelledImage], classes: list[str]) -> ManifestSummary:
    """Count images, empty images and boxes per class name."""
    summary = ManifestSummary()
    for image in images:
        summary.images += 1
        if not image.boxes:
            summary.empty += 1
        summary.boxes.update(classes[b["class_id"]] for b in image.boxes)
    return summary


def merge_labels(existing: Iterable[LabelledImage], new: Iterable[LabelledImage]) -> list[LabelledImage]:
    """All labels by source-ref, the newer label winning; sorted by source-ref for stable output."""
    merged = {image.source_ref: image for image in existing}
    merged.update((image.source_ref, image) for image in new)
    return [merged[key] for key in sorted(merged)]


@dataclass
class Reconciled:
    """The labels kept (digests filled in), those moved to a new key, and those withdrawn, by reason."""

    labels: list[LabelledImage]
    moved: list[tuple[str, str]] = field(default_factory=list)
    withdrawn: list[tuple[LabelledImage, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the labels differ from what was read (digests filled in count as a change)."""
        return self._changed

    _changed: bool = False


def reconcile_with_images(labels: Iterable[LabelledImage], current: dict[str, str]) -> Reconciled:
    """Tie the labels to the pixels they were drawn on; ``current`` maps each image's URI to the
    SHA-256 of its source photo now.

    - same URI, same digest (or a label older than digests): kept, its digest filled in;
    - same URI, another digest (the photo was replaced): withdrawn, so the image is labelled again;
    - URI gone but its digest now under another URI (the photo moved): moved there, unless that
      image already has labels of its own;
    - URI gone and the digest nowhere (the photo was deleted): withdrawn.
    """
    by_digest: dict[str, str] = {}
    for uri, digest in sorted(current.items()):
        by_digest.setdefault(digest, uri)
    labels = list(labels)
    labelled = {label.source_ref for label in labels}
    result = Reconciled(labels=[])
    for label in labels:
        digest = current.get(label.source_ref)
        if digest is not None:
            if label.digest is None or label.digest == digest:
                result._changed |= label.digest is None
                result.labels.append(replace(label, digest=digest))
            else:
                result.withdrawn.append((label, "the photo was replaced: its boxes belong to the old pixels"))
            continue
        target = by_digest.get(label.digest or "")
        if target is not None and target not in labelled:
            labelled.add(target)
            result.moved.append((label.source_ref, target))
            result.labels.append(replace(label, source_ref=target))
        else:
            result.withdrawn.append((label, "the photo is no longer among the images"))
    result._changed |= bool(result.moved or result.withdrawn)
    result.labels.sort(key=lambda label: label.source_ref)
    return result
