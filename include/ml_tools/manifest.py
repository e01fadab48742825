"""Read SageMaker augmented manifests carrying Ground Truth bounding-box labels.

Each line is a JSON object with `source-ref` (here: an absolute local path; the emulator stages
the S3 objects) and the label attribute:
`{"image_size": [{"width", "height", "depth"}], "annotations": [{"class_id", "left", "top",
"width", "height"}]}` in pixels. Lines with no annotations are real and kept (background-only).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A manifest line the trainer cannot use; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: boxes as (class_id, xmin, ymin, xmax, ymax), corners normalised to 0..1."""

    image: Path
    boxes: tuple[tuple[int, float, float, float, float], ...]
    where: str  # "<manifest>:<line>", for messages


def _number(value: object, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(f"{where}: {what} must be a number, got {value!r}")
    return float(value)


def _parse_label(
    label: object, num_classes: int, where: str
) -> tuple[tuple[int, float, float, float, float], ...]:
    if not isinstance(label, dict):
        raise ManifestError(f"{where}: label attribute must be an object, got {type(label).__name__}")
    sizes = label.get("image_size")
    if not isinstance(sizes, list) or not sizes or not isinstance(sizes[0], dict):
        raise ManifestError(f"{where}: label has no image_size [{{width, height, depth}}]")
    width = _number(sizes[0].get("width"), "image_size width", where)
    height = _number(sizes[0].get("height"), "image_size height", where)
    if width <= 0 or height <= 0:
        raise ManifestError(f"{where}: image_size must be positive, got {width}x{height}")
    annotations = label.get("annotations")
    if not isinstance(annotations, list):
        raise ManifestError(f"{where}: label has no annotations list")
    boxes = []
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise ManifestError(f"{where}: annotation {k} must be an object")
        class_id = ann.get("class_id")
        if isinstance(class_id, bool) or not isinstance(class_id, int):
            raise ManifestError(f"{where}: annotation {k} class_id must be an integer, got {class_id!r}")
        if not 0 <= class_id < num_classes:
            raise ManifestError(
                f"{where}: annotation {k} class_id {class_id} is outside 0..{num_classes - 1} (num_classes)"
            )
        left, top, w, h = (
            _number(ann.get(f), f"annotation {k} {f}", where) for f in ("left", "top", "width", "height")
        )
        xmin, ymin = max(0.0, left / width), max(0.0, top / height)
        xmax, ymax = min(1.0, (left + w) / width), min(1.0, (top + h) / height)
        if xmax - xmin <= 1e-3 or ymax - ymin <= 1e-3:
            log.warning(
                "%s: annotation %d has no area inside the %gx%g image; skipped", where, k, width, height
            )
            continue
        boxes.append((class_id, xmin, ymin, xmax, ymax))
    return tuple(boxes)


def read_manifest(path: Path, label_attribute: str, num_classes: int) -> list[Sample]:
    """Every line of an augmented manifest as a Sample; raises ManifestError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    samples = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ManifestError(f"{where}: a manifest line must be a JSON object")
            ref = record.get("source-ref")
            if not isinstance(ref, str) or not ref:
                raise ManifestError(f"{where}: no source-ref")
            if "://" in ref:
                raise ManifestError(f"{where}: source-ref {ref!r} must be a local path (stage S3 data first)")
            image = Path(ref)
            if not image.is_file():
                raise ManifestError(f"{where}: image {ref} not found")
            if label_attribute not in record:
                raise ManifestError(f"{where}: no label attribute {label_attribute!r}")
            samples.append(Sample(image, _parse_label(record[label_attribute], num_classes, where), where))
    if not samples:
        raise ManifestError(f"{path}: manifest has no lines")
    return samples
