"""Label Studio as a labelling backend: project, interface, and Ground Truth's manifest (no Airflow).

A team's own Label Studio server labels the images; this module builds what the server is given
(the rectangle-labels interface over ``classes``, one task per image) and turns what annotators
drew back into exactly the augmented-manifest lines a Ground Truth bounding-box job writes, so the
rest of the pipeline does not know which tool labelled an image.

Choices (documented in the README):
- several annotations on one task: the newest completed one (latest ``updated_at``) wins;
- a skipped task (``was_cancelled``) or a task with no annotation is reported and left out;
- a box drawn partly outside the image is clipped to it; one wholly outside is dropped (reported);
- a class added to ``classes`` between runs is added to the project's interface; a class the
  project has but ``classes`` lacks (renamed or removed) is refused, since boxes already drawn with
  it could be neither mapped nor silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from deeplens_pipeline.groundtruth import LabelledImage

FROM_NAME = "label"
TO_NAME = "image"
DATA_KEY = "image"
BATCH_KEY = "deeplens_batch"
TITLE_MAX = 50  # Label Studio's Project.title max_length
MANIFEST_TYPE = "groundtruth/object-detection"


class LabelStudioError(ValueError):
    """A Label Studio project or export cannot be used; the message says which and why."""


def project_title(environment: str, dag_id: str, bucket: str, input_prefix: str) -> str:
    """The project's deterministic title: one project per environment, DAG and image folder."""
    token = hashlib.sha256(f"{environment}\n{dag_id}\n{bucket}\n{input_prefix}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{bucket}/{input_prefix}".strip("/"))
    room = TITLE_MAX - len("DeepLens  ") - len(token)
    return f"DeepLens {readable[:room].strip('-')} {token}"


def label_config(classes: Iterable[str]) -> str:
    """The labelling interface: rectangle labels over ``classes`` on the task's image."""
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="${DATA_KEY}" zoom="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">{labels}\n'
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def config_labels(config_xml: str) -> list[str]:
    """The label values of the project's RectangleLabels control named :data:`FROM_NAME`."""
    try:
        root = ElementTree.fromstring(config_xml)
    except ElementTree.ParseError as err:
        raise LabelStudioError(f"the project's labelling interface is not XML ({err})") from None
    for control in root.iter("RectangleLabels"):
        if control.get("name") == FROM_NAME:
            return [label.get("value", "") for label in control.iter("Label")]
    raise LabelStudioError(
        f"the project's labelling interface has no <RectangleLabels name={FROM_NAME!r}>: it was changed "
        "by hand; restore it or use another input_prefix"
    )


def reconcile_classes(project_labels: list[str], classes: list[str], project: str) -> bool:
    """Whether the project's interface needs ``classes`` added; refuses renamed or removed classes."""
    missing = [name for name in project_labels if name not in classes]
    if missing:
        raise LabelStudioError(
            f"params.classes {classes} lacks {missing}, which Label Studio project {project!r} labels with: "
            "a renamed or removed class would orphan the boxes already drawn with it. Put the class back, "
            "or rename it in the project (Settings → Labeling Interface) and in params.classes together"
        )
    return any(name not in project_labels for name in classes)


def task_data(image_uri: str, batch: str) -> dict[str, str]:
    """One task's data: the image's s3:// URI (the project's S3 storage presigns it) and the batch."""
    return {DATA_KEY: image_uri, BATCH_KEY: batch}


def task_image(task: dict[str, Any]) -> str | None:
    """The image URI a task was made for (None for a task this pipeline did not import)."""
    value = (task.get("data") or {}).get(DATA_KEY)
    return value if isinstance(value, str) and value.startswith("s3://") else None


def is_answered(task: dict[str, Any]) -> bool:
    """Whether someone annotated or skipped the task (its wait is over)."""
    return bool(task.get("total_annotations") or task.get("cancelled_annotations"))


def _stamp(annotation: dict[str, Any]) -> tuple[str, str, int]:
    return (
        str(annotation.get("updated_at") or ""),
        str(annotation.get("created_at") or ""),
        int(annotation.get("id") or 0),
    )


def newest_completed(annotations: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest annotation that was submitted, not skipped (None if there is none)."""
    done = [a for a in annotations if not a.get("was_cancelled")]
    return max(done, key=_stamp) if done else None


@dataclass
class Conversion:
    """What one export gave: the labelled images and what was left out, by reason."""

    images: list[LabelledImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    clipped_boxes: int = 0
    dropped_boxes: int = 0
    superseded_annotations: int = 0

    def report(self) -> dict[str, Any]:
        """A JSON-serialisable account, for the log and the run's summary."""
        return {
            "labelled": len(self.images),
            "skipped": len(self.skipped),
            "unanswered": len(self.unanswered),
            "clipped_boxes": self.clipped_boxes,
            "dropped_boxes": self.dropped_boxes,
            "superseded_annotations": self.superseded_annotations,
        }


def _pixel_box(value: dict[str, Any], width: int, height: int) -> tuple[float, float, float, float]:
    """A rectangle in Label Studio's percent coordinates as pixel edges (left, top, right, bottom).

    A rotated rectangle (rotation in degrees about its top-left corner) becomes the axis-aligned
    box that holds it, which is what a bounding-box detector can learn.
    """
    x, y = float(value["x"]) / 100 * width, float(value["y"]) / 100 * height
    w, h = float(value["width"]) / 100 * width, float(value["height"]) / 100 * height
    angle = math.radians(float(value.get("rotation") or 0))
    if not angle:
        return x, y, x + w, y + h
    cos, sin = math.cos(angle), math.sin(angle)
    xs = [x, x + w * cos, x + w * cos - h * sin, x - h * sin]
    ys = [y, y + w * sin, y + w * sin + h * cos, y + h * cos]
    return min(xs), min(ys), max(xs), max(ys)


def convert_task(
    task: dict[str, Any], size: tuple[int, int, int], classes: list[str], result: Conversion
) -> None:
    """Add the task's newest completed annotation to ``result`` as a labelled image (pixel boxes).

    ``size`` is the image's real (width, height, depth), read from the image itself; the boxes are
    clipped to it. A label outside ``classes`` is an error naming the task.
    """
    image = task_image(task) or f"task {task.get('id')}"
    annotations = list(task.get("annotations") or [])
    chosen = newest_completed(annotations)
    if chosen is None:
        (result.skipped if annotations else result.unanswered).append(image)
        return
    result.superseded_annotations += sum(1 for a in annotations if not a.get("was_cancelled")) - 1
    width, height, depth = size
    index = {name: i for i, name in enumerate(classes)}
    boxes: list[dict[str, int]] = []
    for item in chosen.get("result") or []:
        if item.get("type") != "rectanglelabels" or item.get("from_name") != FROM_NAME:
            continue
        value = item.get("value") or {}
        try:
            left, top, right, bottom = _pixel_box(value, width, height)
        except (KeyError, TypeError, ValueError) as err:
            raise LabelStudioError(
                f"task {task.get('id')} ({image}): a rectangle without coordinates ({err!r})"
            ) from None
        cl, ct = max(0.0, left), max(0.0, top)
        cr, cb = min(float(width), right), min(float(height), bottom)
        if round(cr) - round(cl) < 1 or round(cb) - round(ct) < 1:
            result.dropped_boxes += len(value.get("rectanglelabels") or [])
            continue
        if (cl, ct, cr, cb) != (left, top, right, bottom):
            result.clipped_boxes += 1
        for name in value.get("rectanglelabels") or []:
            if name not in index:
                raise LabelStudioError(
                    f"task {task.get('id')} ({image}): label {name!r} is not in params.classes {classes}"
                )
            boxes.append(
                {
                    "class_id": index[name],
                    "left": round(cl),
                    "top": round(ct),
                    "width": round(cr) - round(cl),
                    "height": round(cb) - round(ct),
                }
            )
    result.images.append(
        LabelledImage(source_ref=image, width=width, height=height, depth=depth, boxes=boxes)
    )


def manifest_line(
    image: LabelledImage, label_attribute: str, classes: list[str], job: str, created: datetime
) -> str:
    """One augmented-manifest line in the shape a Ground Truth bounding-box job writes.

    As Ground Truth does, the class-map names only the classes present in this image, and each
    object has a confidence (1.0: a person drew it).
    """
    used = sorted({box["class_id"] for box in image.boxes})
    record = {
        "source-ref": image.source_ref,
        label_attribute: {
            "annotations": image.boxes,
            "image_size": [{"width": image.width, "height": image.height, "depth": image.depth}],
        },
        f"{label_attribute}-metadata": {
            "objects": [{"confidence": 1.0} for _ in image.boxes],
            "class-map": {str(i): classes[i] for i in used},
            "type": MANIFEST_TYPE,
            "human-annotated": "yes",
            "creation-date": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
            "job-name": f"labeling-job/{job}",
        },
    }
    return json.dumps(record, separators=(",", ":"))


def output_manifest(
    images: Iterable[LabelledImage], label_attribute: str, classes: list[str], job: str, created: datetime
) -> str:
    """The whole output manifest (one line per labelled image, newline-terminated)."""
    return "".join(manifest_line(i, label_attribute, classes, job, created) + "\n" for i in images)
