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


# --- pre-labels: the current model's boxes as Label Studio predictions ----------------------------

PREDICTION_ID_PREFIX = "deeplens-pred-"
SAME_BOX_TOLERANCE = 0.05
"""Two rectangles are the same box when every coordinate (percent of the image) differs by at most
this much: a box nobody touched comes back exactly, this only absorbs float round trips."""
CHANGED_IOU = 0.5
"""A pre-drawn box and an annotated one overlapping this much (VOC's IoU) are one box, changed."""


@dataclass
class Prelabels:
    """The boxes pre-drawn on one image, and what was left out of them."""

    result: list[dict[str, Any]] = field(default_factory=list)
    below_threshold: int = 0
    unmapped: int = 0
    degenerate: int = 0

    def prediction(self, model_version: str) -> dict[str, Any]:
        """The task's ``predictions`` entry (its score: the mean score of its boxes, 0 without any)."""
        scores = [float(item["score"]) for item in self.result]
        return {
            "model_version": model_version,
            "score": round(sum(scores) / len(scores), 6) if scores else 0.0,
            "result": self.result,
        }


def prediction_results(
    detections: Iterable[Any],
    model_classes: list[str],
    classes: list[str],
    size: tuple[int, int],
    threshold: float,
) -> Prelabels:
    """Label Studio ``rectanglelabels`` results for the detections scoring at least ``threshold``.

    ``detections`` are :class:`deeplens_pipeline.evaluation.Detection` (class id of the *model*,
    score, corners normalised to [0, 1]); a class id becomes the model's class name, kept only when
    it is one of ``classes`` (the project's). Corners are clipped to the image; a box under one
    pixel (``size`` is the image's width and height) is dropped. Regions get stable ids
    (``deeplens-pred-<n>``) so an annotation that keeps a box can be recognised.
    """
    width, height = size
    out = Prelabels()
    wanted = set(classes)
    ranked = sorted(detections, key=lambda d: -d.score)
    for detection in ranked:
        if detection.score < threshold:
            out.below_threshold += 1
            continue
        name = model_classes[detection.class_id] if 0 <= detection.class_id < len(model_classes) else None
        if name is None or name not in wanted:
            out.unmapped += 1
            continue
        x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in detection.box)
        if (x1 - x0) * width < 1 or (y1 - y0) * height < 1:
            out.degenerate += 1
            continue
        out.result.append(
            {
                "id": f"{PREDICTION_ID_PREFIX}{len(out.result)}",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "score": round(float(detection.score), 6),
                "value": {
                    "x": round(100 * x0, 4),
                    "y": round(100 * y0, 4),
                    "width": round(100 * (x1 - x0), 4),
                    "height": round(100 * (y1 - y0), 4),
                    "rotation": 0,
                    "rectanglelabels": [name],
                },
            }
        )
    return out


def newest_prediction(predictions: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The prediction the annotator saw last (latest ``created_at``, then id), or None."""
    items = [p for p in predictions if p]
    return max(items, key=_stamp) if items else None


def _rectangles(result: Iterable[dict[str, Any]]) -> list[tuple[str | None, str, tuple[float, ...]]]:
    """(region id, label, (x, y, width, height)) of each rectangle of the pipeline's control."""
    boxes = []
    for item in result or []:
        if item.get("type") != "rectanglelabels" or item.get("from_name") != FROM_NAME:
            continue
        value = item.get("value") or {}
        try:
            coords = tuple(float(value[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            continue
        if float(value.get("rotation") or 0):
            continue  # a rotated box is never the (axis-aligned) one the model drew
        for label in value.get("rectanglelabels") or []:
            boxes.append((item.get("id"), str(label), coords))
    return boxes


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(p - q) <= SAME_BOX_TOLERANCE for p, q in zip(a, b, strict=True))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class PrelabelDiff:
    """What annotators did with the pre-drawn boxes: kept unchanged, changed, deleted; and added."""

    tasks: int = 0
    predicted: int = 0
    kept: int = 0
    changed: int = 0
    deleted: int = 0
    added: int = 0

    def add(self, other: PrelabelDiff) -> None:
        """Add another task's counts to these."""
        for name in ("tasks", "predicted", "kept", "changed", "deleted", "added"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def report(self) -> dict[str, Any]:
        """A JSON-serialisable account (with the share of pre-drawn boxes kept unchanged)."""
        share = round(self.kept / self.predicted, 4) if self.predicted else None
        return {
            "tasks": self.tasks,
            "predicted_boxes": self.predicted,
            "kept": self.kept,
            "changed": self.changed,
            "deleted": self.deleted,
            "added": self.added,
            "kept_share": share,
        }


def diff_prediction(predicted: Iterable[dict[str, Any]], annotated: Iterable[dict[str, Any]]) -> PrelabelDiff:
    """Compare one task's pre-drawn boxes with the annotation that was submitted.

    A pre-drawn box is *kept* when the annotation has the same box with the same label (the same
    region id first, else any region: Label Studio may re-id regions); *changed* when the annotation
    has a box with its region id but moved, resized or relabelled, or (no id match) a box overlapping
    it by IoU ≥ 0.5; otherwise *deleted*. Annotated boxes matched to no pre-drawn one were *added*.
    """
    preds = _rectangles(predicted)
    boxes = _rectangles(annotated)
    diff = PrelabelDiff(tasks=1, predicted=len(preds))
    free = list(range(len(boxes)))
    left: list[tuple[str, tuple[float, ...]]] = []

    def take(j: int) -> None:
        free.remove(j)

    for pid, label, coords in preds:
        same_id = [j for j in free if pid is not None and boxes[j][0] == pid]
        if same_id:
            j = same_id[0]
            take(j)
            if boxes[j][1] == label and _same(boxes[j][2], coords):
                diff.kept += 1
            else:
                diff.changed += 1
            continue
        left.append((label, coords))
    unmatched: list[tuple[str, tuple[float, ...]]] = []
    for label, coords in left:
        exact = [j for j in free if boxes[j][1] == label and _same(boxes[j][2], coords)]
        if exact:
            take(exact[0])
            diff.kept += 1
        else:
            unmatched.append((label, coords))
    for _label, coords in unmatched:
        overlaps = [(_iou(coords, boxes[j][2]), j) for j in free]
        best = max(overlaps, default=(0.0, -1))
        if best[0] >= CHANGED_IOU:
            take(best[1])
            diff.changed += 1
        else:
            diff.deleted += 1
    diff.added = len(free)
    return diff


def task_prelabel_diff(task: dict[str, Any]) -> PrelabelDiff | None:
    """The diff of a task's newest prediction and newest completed annotation (None: either is missing)."""
    prediction = newest_prediction(task.get("predictions") or [])
    annotation = newest_completed(task.get("annotations") or [])
    if prediction is None or annotation is None:
        return None
    return diff_prediction(prediction.get("result") or [], annotation.get("result") or [])


def prelabel_summary(prelabel: dict[str, Any] | None) -> str | None:
    """The run summary's line on pre-drawn boxes: what annotators did with them, or why there were none.

    ``prelabel`` is the labelling task's ``prelabel`` result (None: no Label Studio, nothing new).
    """
    if not prelabel:
        return None
    if "kept" in prelabel:
        versions = ", ".join(prelabel.get("model_versions") or []) or "?"
        return (
            f"{prelabel['kept']} of {prelabel['predicted_boxes']} kept unchanged, {prelabel['changed']} "
            f"changed, {prelabel['deleted']} deleted; {prelabel['added']} drawn by annotators "
            f"({prelabel['tasks']} task(s), model version {versions})"
        )
    if "skipped" in prelabel:
        return f"none: {prelabel['skipped']}"
    if "boxes" in prelabel:
        return (
            f"{prelabel['boxes']} box(es) pre-drawn on {prelabel['tasks']} task(s) "
            f"(model version {prelabel.get('model_version')}), not yet answered"
        )
    return None
