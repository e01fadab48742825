"""Score a detector on the fixed holdout: VOC average precision per class and mAP (no Airflow).

The detections are what SageMaker's built-in object-detection algorithm answers for one image
(a batch transform writes one such answer per input image, to ``<input name>.out``):
``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`` with corners normalised to
[0, 1] by the image's width and height ("Object Detection Request and Response Formats",
SageMaker developer guide). The ground truth is the holdout's augmented manifest (pixel boxes,
normalised here by each line's ``image_size``).

Per class, every image's detections are ranked by score; one is a true positive when its IoU
with a not-yet-matched labelled box of its class reaches 0.5. AP is the area under the precision
envelope (all-point interpolation, VOC 2010+); mAP is the mean over the classes that have labelled
boxes. The same rules as ``ml_tools.evaluate`` (the emulated algorithm's validation mAP), in pure
Python so the Airflow task needs neither numpy nor mxnet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.layout import split_s3_uri

IOU_THRESHOLD = 0.5
CURVE_POINTS = 50
"""At most this many points of each PR curve are kept (enough for a plot, small in XCom)."""


class EvaluationError(ValueError):
    """A prediction or a transform input cannot be used; the message names it."""


@dataclass(frozen=True)
class Detection:
    """One detected box: class id, score and normalised corners."""

    class_id: int
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ClassResult:
    """AP of one class, its labelled and detected counts and its PR curve (recall, precision)."""

    name: str
    ap: float | None
    labelled: int
    detected: int
    true_positives: int
    curve: list[tuple[float, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "ap": None if self.ap is None else round(self.ap, 6),
            "labelled": self.labelled,
            "detected": self.detected,
            "true_positives": self.true_positives,
            "pr_curve": [[round(r, 4), round(p, 4)] for r, p in self.curve],
        }


@dataclass(frozen=True)
class Evaluation:
    """mAP over the classes with labelled boxes, the per-class results, and each image's misses."""

    map: float
    classes: list[ClassResult]
    images: int
    missed: dict[str, int]
    """Labelled boxes no detection matched, per image (source-ref): the worst misses first to show."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (what the task returns and writes to S3)."""
        worst = sorted(((n, ref) for ref, n in self.missed.items() if n), key=lambda t: (-t[0], t[1]))
        return {
            "map": round(self.map, 6),
            "iou_threshold": IOU_THRESHOLD,
            "images": self.images,
            "per_class": {c.name: c.as_dict() for c in self.classes},
            "worst_misses": [{"source_ref": ref, "missed_boxes": n} for n, ref in worst[:20]],
        }


def parse_prediction(body: str | bytes, num_classes: int, where: str = "prediction") -> list[Detection]:
    """The detections of one ``.out`` file; rows with a class id below 0 (none) are skipped."""
    try:
        document = json.loads(body)
        rows = document["prediction"]
    except (ValueError, TypeError, KeyError) as err:
        raise EvaluationError(f"{where}: not the algorithm's prediction JSON ({err!r})") from None
    detections = []
    for number, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 6:
            raise EvaluationError(f"{where}: row {number} is not [class, score, xmin, ymin, xmax, ymax]")
        class_id, score, *box = (float(v) for v in row)
        if class_id < 0:
            continue
        if class_id != int(class_id) or int(class_id) >= num_classes:
            raise EvaluationError(f"{where}: row {number} has class {class_id}, not one of {num_classes}")
        detections.append(Detection(int(class_id), score, (box[0], box[1], box[2], box[3])))
    return detections


def labelled_boxes(image: LabelledImage) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(class id, normalised corners) of each labelled box of ``image``."""
    w, h = float(image.width), float(image.height)
    return [
        (
            b["class_id"],
            (b["left"] / w, b["top"] / h, (b["left"] + b["width"]) / w, (b["top"] + b["height"]) / h),
        )
        for b in image.boxes
    ]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (xmin, ymin, xmax, ymax) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-12)


def average_precision(recall: Sequence[float], precision: Sequence[float]) -> float:
    """Area under the monotone precision envelope (all-point interpolation)."""
    mrec = [0.0, *recall, 1.0]
    mpre = [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def _thin(curve: list[tuple[float, float]], points: int = CURVE_POINTS) -> list[tuple[float, float]]:
    if len(curve) <= points:
        return curve
    step = (len(curve) - 1) / (points - 1)
    return [curve[round(i * step)] for i in range(points)]


def evaluate(
    detections: Mapping[str, Sequence[Detection]],
    holdout: Iterable[LabelledImage],
    classes: Sequence[str],
    iou_threshold: float = IOU_THRESHOLD,
) -> Evaluation:
    """Score ``detections`` (by source-ref) against the holdout's labels.

    Every holdout image must have detections (an empty list if none): a missing answer is an error,
    not a silent miss.
    """
    images = list(holdout)
    missing = [i.source_ref for i in images if i.source_ref not in detections]
    if missing:
        raise EvaluationError(f"no prediction for {len(missing)} holdout images, e.g. {missing[:3]}")
    truth = {i.source_ref: labelled_boxes(i) for i in images}
    matched_any = {ref: [False] * len(boxes) for ref, boxes in truth.items()}
    results = []
    for class_id, name in enumerate(classes):
        gts = {ref: [box for c, box in boxes if c == class_id] for ref, boxes in truth.items()}
        n_gt = sum(len(b) for b in gts.values())
        scored = sorted(
            ((d.score, ref, d.box) for ref in truth for d in detections[ref] if d.class_id == class_id),
            key=lambda t: -t[0],
        )
        used = {ref: [False] * len(b) for ref, b in gts.items()}
        tp_flags = []
        for _, ref, box in scored:
            overlaps = [iou(box, g) for g in gts[ref]]
            hit = False
            if overlaps:
                j = max(range(len(overlaps)), key=overlaps.__getitem__)
                if overlaps[j] >= iou_threshold and not used[ref][j]:
                    used[ref][j] = hit = True
            tp_flags.append(hit)
        for ref, flags in used.items():
            indices = [k for k, (c, _) in enumerate(truth[ref]) if c == class_id]
            for k, flag in zip(indices, flags, strict=True):
                matched_any[ref][k] = matched_any[ref][k] or flag
        tp = 0
        curve = []
        for rank, flag in enumerate(tp_flags, start=1):
            tp += flag
            curve.append((tp / n_gt if n_gt else 0.0, tp / rank))
        if n_gt == 0:
            ap = None
        elif not scored:
            ap = 0.0
        else:
            ap = average_precision([r for r, _ in curve], [p for _, p in curve])
        results.append(ClassResult(name, ap, n_gt, len(scored), tp, _thin(curve)))
    present = [r.ap for r in results if r.ap is not None]
    return Evaluation(
        map=sum(present) / len(present) if present else 0.0,
        classes=results,
        images=len(images),
        missed={ref: flags.count(False) for ref, flags in matched_any.items()},
    )


# --- the batch transform's input and output names -------------------------------------------


def transform_manifest(image_uris: Sequence[str]) -> str:
    """A batch transform ManifestFile listing ``image_uris`` (one bucket): ``[{"prefix": ...}, keys...]``."""
    if not image_uris:
        raise EvaluationError("the holdout is empty: nothing to evaluate on")
    buckets = {split_s3_uri(uri)[0] for uri in image_uris}
    if len(buckets) != 1:
        raise EvaluationError(f"the holdout's images are in several buckets {sorted(buckets)}")
    (bucket,) = buckets
    return json.dumps([{"prefix": f"s3://{bucket}/"}, *(split_s3_uri(u)[1] for u in image_uris)])


def prediction_uri(image_uri: str, output_path: str) -> str:
    """Where the transform writes the answer for ``image_uri`` listed by :func:`transform_manifest`:
    ``<S3OutputPath>/<path relative to the manifest's prefix>.out``."""
    return f"{output_path.rstrip('/')}/{split_s3_uri(image_uri)[1]}.out"
