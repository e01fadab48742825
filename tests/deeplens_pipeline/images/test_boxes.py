"""Existing boxes through rotation, padding or cropping and scaling: real photos with their real Ground
Truth boxes, Pascal VOC files, and property tests of the transform."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from deeplens_pipeline.images.boxes import (
    Box,
    LabelsError,
    LabelSet,
    carry_boxes,
    class_ids,
    manifest_line,
    match_manifest,
    parse_manifest,
    parse_manifest_line,
    parse_voc,
)
from deeplens_pipeline.images.geometry import Transform, orient_point, oriented_size, plan_square
from deeplens_pipeline.images.preprocess import PreprocessOptions, preprocess_file

REAL = ["blue_box_1_000133.jpg", "yellow_box_1_000086.jpg"]
INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def flat(boxes) -> list[float]:
    return [v for b in boxes for v in (b.left, b.top, b.width, b.height)]


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    squares = sum(c * (v % 256) ** 2 for v, c in enumerate(diff.histogram()))
    mse = squares / (diff.width * diff.height * 3)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def content_matches(original: Image.Image, output: Image.Image, box: Box, t: Transform) -> float:
    """PSNR between the output inside ``box`` and the same region cut from the oriented original."""
    s = t.scale
    region = ((box.left - t.dx) / s, (box.top - t.dy) / s, (box.right - t.dx) / s, (box.bottom - t.dy) / s)
    expected = original.resize((int(box.width), int(box.height)), Image.Resampling.LANCZOS, box=region)
    got = output.crop((box.left, box.top, box.right, box.bottom))
    return psnr(expected, got)


def real_labels(make, name: str) -> LabelSet:
    ref, labels = parse_manifest_line(make.groundtruth_line(name), f"groundtruth:{name}")
    assert ref.endswith("/" + name)
    assert labels.image_size == (1920, 1080) and len(labels.boxes) == 1
    return labels


def raw_frame(labels: LabelSet, w: int, h: int, orientation: int) -> LabelSet:
    """The same boxes expressed in the stored (unrotated) frame of a photo with ``orientation``."""
    boxes = []
    raw_w, raw_h = oriented_size(w, h, orientation)  # the raw frame is the oriented one turned back
    for b in labels.boxes:
        ax, ay = orient_point(b.left, b.top, w, h, INVERSE[orientation])
        bx, by = orient_point(b.right, b.bottom, w, h, INVERSE[orientation])
        boxes.append(Box(min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay), b.label, b.class_id))
    return LabelSet(origin=labels.origin, boxes=tuple(boxes), image_size=(int(raw_w), int(raw_h)))


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize("mode", ["letterbox", "crop"])
@pytest.mark.parametrize("stored", ["as-is", "rotated+exif", "rotated+exif+raw-frame-boxes"])
def test_real_photo_boxes_follow_the_pixels(tmp_path, make, name, mode, stored):
    original = Image.open(make.PHOTOS / name).convert("RGB")
    labels = real_labels(make, name)
    src = make.PHOTOS / name
    if stored != "as-is":  # the same photo as a phone stores it: pixels turned, EXIF 6 to turn back
        src = tmp_path / name
        original.transpose(Image.Transpose.ROTATE_90).save(src, quality=95, exif=make.exif_bytes(6))
    if stored.endswith("raw-frame-boxes"):
        labels = raw_frame(labels, 1920, 1080, 6)
        assert labels.image_size == (1080, 1920)
    outcome = preprocess_file(src, tmp_path / "out.jpg", PreprocessOptions(size=512, mode=mode))
    t = Transform(**outcome["transform"])
    assert (t.w, t.h) == (1920, 1080)
    carried = carry_boxes(labels, t)
    assert len(carried.boxes) == 1, carried.notes
    (box,) = carried.boxes
    gt = real_labels(make, name).boxes[0]
    s = 512 / 1920 if mode == "letterbox" else 512 / 1080
    dx, dy = (0, 112) if mode == "letterbox" else ((512 - 1920 * s) / 2, 0)
    want = (
        max(0, gt.left * s + dx),
        gt.top * s + dy,
        min(512, gt.right * s + dx),
        gt.bottom * s + dy,
    )
    assert (box.left, box.top, box.right, box.bottom) == pytest.approx(want, abs=1.0)
    with Image.open(tmp_path / "out.jpg") as output:
        assert content_matches(original, output, box, t) > 24
    clipped = any("clipped" in n for n in carried.notes)
    assert clipped == (mode == "crop" and name.startswith("blue"))  # the blue box sticks out of the crop


def test_real_boxes_scale_when_labelled_at_another_resolution(make):
    labels = real_labels(make, REAL[0])
    half = LabelSet(
        origin="half",
        boxes=tuple(Box(b.left / 2, b.top / 2, b.width / 2, b.height / 2, b.label) for b in labels.boxes),
        image_size=(960, 540),
    )
    t = plan_square(1920, 1080, 512)
    full, scaled = carry_boxes(labels, t), carry_boxes(half, t)
    assert flat(scaled.boxes) == pytest.approx(flat(full.boxes), abs=1)
    assert any("scaled" in n for n in scaled.notes)


def test_boxes_outside_the_crop_are_dropped_with_a_note():
    t = plan_square(2000, 1000, 500, "crop")  # keeps x in 500..1500
    labels = LabelSet(
        origin="test",
        boxes=(
            Box(10, 10, 200, 200, "left edge"),
            Box(1400, 100, 400, 200, "half in"),
            Box(900, 400, 100, 100, "inside"),
        ),
        image_size=(2000, 1000),
    )
    carried = carry_boxes(labels, t)
    assert [b.label for b in carried.boxes] == ["half in", "inside"]
    assert any("left edge #0: left the frame, dropped" in n for n in carried.notes)
    assert any("half in #1: clipped" in n for n in carried.notes)
    strict = carry_boxes(labels, t, min_visibility=0.5)
    assert [b.label for b in strict.boxes] == ["inside"]
    assert any("only 25% in frame" in n for n in strict.notes)


def test_empty_boxes_are_dropped():
    labels = LabelSet("t", (Box(5, 5, 0, 10, "flat"),), (100, 100))
    carried = carry_boxes(labels, plan_square(100, 100, 300))
    assert carried.boxes == [] and "empty box" in carried.notes[0]


# ---------------------------------------------------------------- property tests


box_fraction = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.05, 1), st.floats(0.05, 1))


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(64, 6000),
    h=st.integers(64, 6000),
    size=st.sampled_from([300, 480, 512]),
    mode=st.sampled_from(["letterbox", "crop"]),
    orientation=st.integers(1, 8),
    fractions=st.lists(box_fraction, min_size=1, max_size=6),
)
def test_carried_boxes_are_the_clipped_transformed_boxes(w, h, size, mode, orientation, fractions):
    t = plan_square(w, h, size, mode, orientation)
    boxes = []
    for fx, fy, fw, fh in fractions:
        left, top = fx * w, fy * h
        boxes.append(Box(left, top, min(w - left, fw * w), min(h - top, fh * h), label="thing"))
    labels = LabelSet("prop", tuple(boxes), (w, h))
    carried = carry_boxes(labels, t)
    kept = iter(carried.boxes)
    for b in boxes:
        x0, y0 = t.apply(b.left, b.top)
        x1, y1 = t.apply(b.right, b.bottom)
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(size, x1), min(size, y1)
        if (
            math.floor(cx1 + 0.5) - math.floor(cx0 + 0.5) < 1
            or math.floor(cy1 + 0.5) - math.floor(cy0 + 0.5) < 1
        ):
            continue  # dropped: less than a pixel left
        got = next(kept)
        assert got.left >= 0 and got.top >= 0 and got.right <= size and got.bottom <= size
        assert (got.left, got.top, got.right, got.bottom) == pytest.approx(
            (cx0, cy0, cx1, cy1), abs=0.5 + 1e-9
        )
    assert next(kept, None) is None
    if mode == "letterbox":  # nothing leaves a letterboxed frame: only sub-pixel boxes can vanish
        big = sum(1 for b in boxes if b.width * t.scale >= 1.5 and b.height * t.scale >= 1.5)
        assert len(carried.boxes) >= big
        assert not any("clipped" in n for n in carried.notes)


@settings(max_examples=100, deadline=None)
@given(
    w=st.integers(64, 5000),
    h=st.integers(64, 5000),
    orientation=st.sampled_from([5, 6, 7, 8]),
    mode=st.sampled_from(["letterbox", "crop"]),
    fractions=st.lists(box_fraction, min_size=1, max_size=4),
)
def test_raw_frame_boxes_give_the_same_result_as_oriented_ones(w, h, orientation, mode, fractions):
    assume(w != h)  # a square photo cannot tell the frames apart by size
    t = plan_square(w, h, 512, mode, orientation)
    boxes = tuple(
        Box(fx * w, fy * h, min(w - fx * w, fw * w), min(h - fy * h, fh * h), label="x")
        for fx, fy, fw, fh in fractions
    )
    oriented = LabelSet("o", boxes, (w, h))
    raw = raw_frame(oriented, w, h, orientation)
    a, b = carry_boxes(oriented, t), carry_boxes(raw, t)
    assert flat(a.boxes) == pytest.approx(flat(b.boxes), abs=1)


# ---------------------------------------------------------------- reading and writing


def test_every_real_manifest_line_parses(make):
    from pathlib import Path

    total = 0
    for path in sorted(Path(make.PHOTOS).parent.joinpath("groundtruth").glob("*.manifest")):
        entries = parse_manifest(path.read_text(), path.name)
        total += len(entries)
        for ref, labels in entries:
            assert ref.startswith("s3://") and labels.image_size == (1920, 1080)
            assert all(b.label == "storage box" and b.class_id == 0 for b in labels.boxes)
    assert total > 100


def test_manifest_attribute_may_be_named_and_errors_name_the_line():
    line = json.dumps(
        {
            "source-ref": "s3://b/a.jpg",
            "boxes": {"image_size": [{"width": 10, "height": 10, "depth": 3}], "annotations": []},
        }
    )
    assert parse_manifest_line(line, "m:1", "boxes")[1].boxes == ()
    assert parse_manifest_line(line, "m:1", "other") is None
    with pytest.raises(LabelsError, match="m.manifest:2: not a JSON line"):
        parse_manifest(line + "\n{oops\n", "m.manifest")
    with pytest.raises(LabelsError, match="x:1: no 'source-ref'"):
        parse_manifest_line('{"a": 1}', "x:1")
    with pytest.raises(LabelsError, match="y:3: malformed 'bb'"):
        parse_manifest_line(
            json.dumps({"source-ref": "s3://b/a", "bb": {"annotations": [{"left": 1}]}}), "y:3"
        )


def test_manifest_lines_match_photos_by_file_name():
    labels = LabelSet("m", (), None)
    entries = [
        ("s3://old-bucket/frames/blue/x_1.jpg", labels),
        ("s3://old-bucket/frames/b/dup.jpg", labels),
        ("s3://old-bucket/frames/c/twice.jpg", labels),
        ("s3://old-bucket/frames/nowhere.jpg", labels),
    ]
    sources = ["x_1.jpg", "a/dup.jpg", "b/dup.jpg", "p/twice.jpg", "q/twice.jpg"]
    matched = match_manifest(entries, sources)
    assert set(matched) == {"x_1.jpg", "b/dup.jpg"}  # twice.jpg is ambiguous: matched to neither


VOC = b"""<annotation>
  <filename>cat.jpg</filename>
  <size><width>400</width><height>300</height><depth>3</depth></size>
  <object><name>cat</name><bndbox><xmin>1</xmin><ymin>11</ymin><xmax>100</xmax><ymax>60</ymax></bndbox></object>
  <object><name>dog</name><bndbox><xmin>201</xmin><ymin>101</ymin><xmax>400</xmax><ymax>300</ymax></bndbox></object>
</annotation>"""


def test_pascal_voc_boxes_are_one_based_inclusive():
    labels = parse_voc(VOC, "cat.xml")
    assert labels.image_size == (400, 300)
    cat, dog = labels.boxes
    assert (cat.left, cat.top, cat.width, cat.height, cat.label) == (0, 10, 100, 50, "cat")
    assert (dog.right, dog.bottom) == (400, 300)
    carried = carry_boxes(labels, plan_square(400, 300, 300))
    assert [(b.left, b.top, b.right, b.bottom) for b in carried.boxes] == [
        (0, 45, 75, 82),
        (150, 112, 300, 262),
    ]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<annotation><object><name>a</name></object></annotation>", "without <bndbox>"),
        (
            b"<annotation><object><bndbox><xmin>x</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>"
            b"</object></annotation>",
            "<xmin> is missing or not a number",
        ),
        (b"<notes/>", "not <annotation>"),
        (b"<annotation>", "not well-formed"),
    ],
)
def test_bad_voc_files_are_named(xml, message):
    with pytest.raises(LabelsError, match=f"bad.xml: .*{message}"):
        parse_voc(xml, "bad.xml")


def test_oversized_voc_is_refused():
    with pytest.raises(LabelsError, match="too large"):
        parse_voc(b" " * (2 << 20), "big.xml")


def test_manifest_line_is_ground_truth_shaped():
    boxes = [Box(1, 2, 30, 40, "yellow_box"), Box(5, 6, 7, 8, "unknown"), Box(9, 9, 9, 9, None, class_id=3)]
    ids, names = class_ids(["blue_box", "yellow_box"], boxes)
    line, notes = manifest_line("s3://deeplens-x/input/a.jpg", 512, boxes, ids, "bounding-box")
    record = json.loads(line)
    assert record["source-ref"] == "s3://deeplens-x/input/a.jpg"
    assert record["bounding-box"]["image_size"] == [{"width": 512, "height": 512, "depth": 3}]
    assert record["bounding-box"]["annotations"] == [
        {"class_id": 1, "left": 1, "top": 2, "width": 30, "height": 40},
        {"class_id": 3, "left": 9, "top": 9, "width": 9, "height": 9},
    ]
    meta = record["bounding-box-metadata"]
    assert meta["class-map"] == {"0": "blue_box", "1": "yellow_box"}
    assert meta["type"] == "groundtruth/object-detection" and len(meta["objects"]) == 2
    assert notes == ["class 'unknown' is not among the labels, box dropped"]
    assert names == ["blue_box", "yellow_box"]


def test_class_ids_without_labels_are_sorted_names():
    ids, names = class_ids(None, [Box(0, 0, 1, 1, "b"), Box(0, 0, 1, 1, "a"), Box(0, 0, 1, 1, "b")])
    assert ids == {"a": 0, "b": 1} and names == ["a", "b"]


@pytest.mark.parametrize("attribute", ["boxes-metadata", "x-ref"])
def test_label_attribute_must_be_valid(attribute):
    with pytest.raises(ValueError, match="must not end"):
        manifest_line("s3://b/k", 300, [], {}, attribute)


def test_label_sets_round_trip_through_json():
    labels = LabelSet("o", (Box(1.5, 2, 3, 4, "a"), Box(0, 0, 1, 1, None, 2)), (10, 20))
    assert LabelSet.from_dict(json.loads(json.dumps(labels.to_dict()))) == labels
