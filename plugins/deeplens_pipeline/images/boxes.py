"""Existing bounding boxes: read them (Ground Truth manifest lines, Pascal VOC XML), carry them through
the image's geometry, and write them as Ground Truth augmented-manifest lines.

Frames. Ground Truth shows workers the image as a browser does, EXIF orientation applied, so manifest
boxes are taken to be in the *oriented* frame; when the recorded ``image_size`` matches only the raw
(stored) size of a rotated photo, the boxes are taken to be in the raw frame and rotated with it. A
recorded size that differs from the photo's (labelled at another resolution) is scaled to it.

Pascal VOC ``bndbox`` values are 1-based inclusive pixel indices (the VOC devkit's convention): a box
``xmin=1 .. xmax=10`` covers ``0 <= x <= 10`` in continuous coordinates.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from deeplens_pipeline.images.geometry import Transform, orient_point, oriented_size

MAX_VOC_BYTES = 1 << 20
GT_TYPE = "groundtruth/object-detection"


class LabelsError(ValueError):
    """A manifest line or VOC file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Box:
    """A box in continuous pixel coordinates; ``label`` is the class name when known."""

    left: float
    top: float
    width: float
    height: float
    label: str | None = None
    class_id: int | None = None

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


@dataclass(frozen=True)
class LabelSet:
    """The boxes of one image as labelled, the image size they refer to, and where they came from."""

    origin: str
    boxes: tuple[Box, ...]
    image_size: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "image_size": list(self.image_size) if self.image_size else None,
            "boxes": [{k: v for k, v in asdict(b).items() if v is not None} for b in self.boxes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        size = data.get("image_size")
        return cls(
            origin=str(data["origin"]),
            boxes=tuple(Box(**b) for b in data.get("boxes", [])),
            image_size=(int(size[0]), int(size[1])) if size else None,
        )


# ---------------------------------------------------------------- reading


def _label_attribute(record: dict[str, Any], wanted: str | None) -> str | None:
    if wanted:
        return wanted if wanted in record else None
    for key, value in record.items():
        if isinstance(value, dict) and "annotations" in value:
            meta = record.get(f"{key}-metadata", {})
            if not isinstance(meta, dict) or meta.get("type", GT_TYPE) == GT_TYPE:
                return key
    return None


def parse_manifest_line(
    line: str, origin: str, label_attribute: str | None = None
) -> tuple[str, LabelSet] | None:
    """``(source-ref, labels)`` of one Ground Truth output-manifest line; None when it has no boxes attribute.

    ``label_attribute`` names the attribute; without it the first object-detection attribute is used.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LabelsError(f"{origin}: not a JSON line ({exc.msg})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("source-ref"), str):
        raise LabelsError(f"{origin}: no 'source-ref' string")
    attribute = _label_attribute(record, label_attribute)
    if attribute is None:
        return None
    value = record[attribute]
    meta = record.get(f"{attribute}-metadata") or {}
    class_map = meta.get("class-map", {}) if isinstance(meta, dict) else {}
    try:
        size_entry = (value.get("image_size") or [None])[0]
        image_size = (int(size_entry["width"]), int(size_entry["height"])) if size_entry else None
        boxes = tuple(
            Box(
                left=float(a["left"]),
                top=float(a["top"]),
                width=float(a["width"]),
                height=float(a["height"]),
                class_id=int(a["class_id"]) if "class_id" in a else None,
                label=class_map.get(str(a.get("class_id"))) if class_map else None,
            )
            for a in value.get("annotations", [])
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabelsError(f"{origin}: malformed '{attribute}' value ({exc!r})") from exc
    return record["source-ref"], LabelSet(origin=origin, boxes=boxes, image_size=image_size)


def parse_manifest(text: str, name: str, label_attribute: str | None = None) -> list[tuple[str, LabelSet]]:
    """Every labelled line of a Ground Truth manifest (blank lines skipped); errors name ``name:line``."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            parsed = parse_manifest_line(line, f"{name}:{number}", label_attribute)
            if parsed is not None:
                entries.append(parsed)
    return entries


def match_manifest(entries: Iterable[tuple[str, LabelSet]], sources: Iterable[str]) -> dict[str, LabelSet]:
    """Attach manifest lines to source paths by file name (the longest matching path suffix wins).

    A ``source-ref`` matches a source when one path ends with the other's trailing components;
    ties (the same file name in two folders and no longer common suffix) match nothing.
    """
    by_name: dict[str, list[str]] = {}
    for source in sources:
        by_name.setdefault(PurePosixPath(source).name, []).append(source)
    matched: dict[str, LabelSet] = {}
    for ref, labels in entries:
        ref_parts = PurePosixPath(ref.split("://", 1)[-1]).parts
        candidates = by_name.get(ref_parts[-1] if ref_parts else "", [])
        best: list[tuple[int, str]] = []
        for source in candidates:
            parts = PurePosixPath(source).parts
            common = 0
            while common < min(len(parts), len(ref_parts)) and parts[-1 - common] == ref_parts[-1 - common]:
                common += 1
            best.append((common, source))
        if not best:
            continue
        best.sort(reverse=True)
        if len(best) > 1 and best[0][0] == best[1][0]:
            continue
        matched[best[0][1]] = labels
    return matched


def _voc_number(element: ET.Element, tag: str, origin: str) -> float:
    text = element.findtext(tag)
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LabelsError(f"{origin}: <{tag}> is missing or not a number ({text!r})")
    return value


def parse_voc(data: bytes, origin: str) -> LabelSet:
    """Boxes of a Pascal VOC annotation file (``<object><name>`` + ``<bndbox>``, ``<size>``)."""
    if len(data) > MAX_VOC_BYTES:
        raise LabelsError(f"{origin}: {len(data)} bytes is too large for a VOC annotation")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise LabelsError(f"{origin}: not well-formed XML ({exc})") from exc
    if root.tag != "annotation":
        raise LabelsError(f"{origin}: root element is <{root.tag}>, not <annotation>")
    size = root.find("size")
    image_size = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        w, h = _voc_number(size, "width", origin), _voc_number(size, "height", origin)
        image_size = (int(w), int(h)) if w > 0 and h > 0 else None
    boxes = []
    for obj in root.iter("object"):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise LabelsError(f"{origin}: <object> without <bndbox>")
        xmin, ymin = _voc_number(bndbox, "xmin", origin), _voc_number(bndbox, "ymin", origin)
        xmax, ymax = _voc_number(bndbox, "xmax", origin), _voc_number(bndbox, "ymax", origin)
        name = (obj.findtext("name") or "").strip() or None
        boxes.append(
            Box(left=xmin - 1, top=ymin - 1, width=xmax - xmin + 1, height=ymax - ymin + 1, label=name)
        )
    return LabelSet(origin=origin, boxes=tuple(boxes), image_size=image_size)


# ---------------------------------------------------------------- carrying


@dataclass
class Carried:
    """Boxes in output pixels (integers, clipped to the square) and notes on what was changed or dropped."""

    boxes: list[Box] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _to_oriented(
    labels: LabelSet, t: Transform
) -> tuple[list[tuple[float, float, float, float, Box]], list[str]]:
    """Boxes as oriented-frame corner tuples ``(x0, y0, x1, y1, box)``."""
    notes: list[str] = []
    raw_w, raw_h = oriented_size(t.w, t.h, t.orientation)  # the swap is its own inverse
    frame, sx, sy = "oriented", 1.0, 1.0
    if labels.image_size is not None and labels.image_size != (t.w, t.h):
        iw, ih = labels.image_size
        if (iw, ih) == (raw_w, raw_h):
            frame = "raw"
        elif abs(iw / ih - t.w / t.h) <= 0.01 * (t.w / t.h):
            sx, sy = t.w / iw, t.h / ih
            notes.append(f"labelled at {iw}x{ih}; boxes scaled to {t.w}x{t.h}")
        elif abs(iw / ih - raw_w / raw_h) <= 0.01 * (raw_w / raw_h):
            frame, sx, sy = "raw", raw_w / iw, raw_h / ih
            notes.append(f"labelled at {iw}x{ih} unrotated; boxes scaled to {raw_w}x{raw_h} and rotated")
        else:
            sx, sy = t.w / iw, t.h / ih
            notes.append(f"labelled at {iw}x{ih}, image is {t.w}x{t.h}: axes scaled separately")
    out = []
    for box in labels.boxes:
        x0, y0, x1, y1 = box.left * sx, box.top * sy, box.right * sx, box.bottom * sy
        if frame == "raw":
            ax, ay = orient_point(x0, y0, raw_w, raw_h, t.orientation)
            bx, by = orient_point(x1, y1, raw_w, raw_h, t.orientation)
            x0, x1, y0, y1 = min(ax, bx), max(ax, bx), min(ay, by), max(ay, by)
        out.append((x0, y0, x1, y1, box))
    return out, notes


def carry_boxes(labels: LabelSet, t: Transform, min_visibility: float = 0.0) -> Carried:
    """Transform ``labels`` into the output square: scale, pad or crop offsets, clip, round.

    A box is dropped (with a note) when nothing of it is left inside the square, when less than one
    output pixel remains on a side, or when less than ``min_visibility`` of its area stays in frame.
    """
    corners, notes = _to_oriented(labels, t)
    carried = Carried(notes=notes)
    size = t.size
    for index, (x0, y0, x1, y1, box) in enumerate(corners):
        name = box.label or (f"class {box.class_id}" if box.class_id is not None else f"box {index}")
        if not (x1 > x0 and y1 > y0):
            carried.notes.append(f"{name} #{index}: empty box dropped")
            continue
        ox0, oy0 = t.apply(x0, y0)
        ox1, oy1 = t.apply(x1, y1)
        area = (ox1 - ox0) * (oy1 - oy0)
        cx0, cy0 = max(0.0, ox0), max(0.0, oy0)
        cx1, cy1 = min(float(size), ox1), min(float(size), oy1)
        left, top, right, bottom = (math.floor(v + 0.5) for v in (cx0, cy0, cx1, cy1))  # half up
        if right - left < 1 or bottom - top < 1:
            carried.notes.append(f"{name} #{index}: left the frame, dropped")
            continue
        visible = (cx1 - cx0) * (cy1 - cy0) / area
        if visible < min_visibility:
            carried.notes.append(f"{name} #{index}: only {visible:.0%} in frame, dropped")
            continue
        if visible < 0.999:
            carried.notes.append(f"{name} #{index}: clipped to the frame ({visible:.0%} visible)")
        carried.boxes.append(
            Box(
                left=left,
                top=top,
                width=right - left,
                height=bottom - top,
                label=box.label,
                class_id=box.class_id,
            )
        )
    return carried


# ---------------------------------------------------------------- writing


def class_ids(labels: list[str] | None, boxes: Iterable[Box]) -> tuple[dict[str, int], list[str]]:
    """The class name -> id map: ``labels`` in order when given, else every box label sorted."""
    if labels:
        return {name: i for i, name in enumerate(labels)}, list(labels)
    names = sorted({b.label for b in boxes if b.label})
    return {name: i for i, name in enumerate(names)}, names


def manifest_line(
    source_ref: str,
    size: int,
    boxes: Iterable[Box],
    ids: dict[str, int],
    attribute: str = "bounding-box",
    job_name: str = "labeling-job/prelabelled",
) -> tuple[str, list[str]]:
    """One Ground Truth augmented-manifest line for a square output image, and notes on dropped boxes.

    A box's class id is its label's index in ``ids``; a box without a label keeps its numeric
    class id; a label missing from ``ids`` is dropped with a note.
    """
    if attribute.endswith(("-metadata", "-ref")):
        raise ValueError(f"label attribute {attribute!r} must not end in '-metadata' or '-ref'")
    annotations, notes = [], []
    for box in boxes:
        if box.label is not None:
            if box.label not in ids:
                notes.append(f"class {box.label!r} is not among the labels, box dropped")
                continue
            class_id = ids[box.label]
        elif box.class_id is not None:
            class_id = box.class_id
        else:
            notes.append("box without a class dropped")
            continue
        annotations.append(
            {
                "class_id": class_id,
                "left": int(box.left),
                "top": int(box.top),
                "width": int(box.width),
                "height": int(box.height),
            }
        )
    names = {str(i): name for name, i in ids.items()}
    record = {
        "source-ref": source_ref,
        attribute: {"image_size": [{"width": size, "height": size, "depth": 3}], "annotations": annotations},
        f"{attribute}-metadata": {
            "objects": [{"confidence": 1.0} for _ in annotations],
            "class-map": names,
            "type": GT_TYPE,
            "human-annotated": "yes",
            "job-name": job_name,
        },
    }
    return json.dumps(record, separators=(",", ":")), notes
