"""Augmented manifests with Ground Truth bounding boxes: the real format, empty lines, bad lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import GROUNDTRUTH, PHOTOS

from ml_tools.manifest import ManifestError, read_manifest


def _localise_real_manifest(tmp_path: Path) -> Path:
    """The real blue-box manifest with every source-ref pointing at a local copy of a real frame."""
    photo = tmp_path / "frame.jpg"
    shutil.copy(PHOTOS / "blue_box_1_000133.jpg", photo)
    lines = []
    for line in (
        (GROUNDTRUTH / "blue-box-small-job-public-blue-box-small-job-public.output.manifest")
        .read_text()
        .splitlines()
    ):
        record = json.loads(line)
        record["source-ref"] = str(photo)
        lines.append(json.dumps(record))
    out = tmp_path / "real.manifest"
    out.write_text("\n".join(lines) + "\n")
    return out


def test_real_ground_truth_output_reads_with_its_empty_lines(tmp_path: Path) -> None:
    samples = read_manifest(_localise_real_manifest(tmp_path), "bb", num_classes=1)
    assert len(samples) == 21
    empty = [s for s in samples if not s.boxes]
    assert empty, "the real data has lines without boxes"
    boxed = [s for s in samples if s.boxes]
    for s in boxed:
        for class_id, xmin, ymin, xmax, ymax in s.boxes:
            assert class_id == 0 and 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1
    # 417,1049 140x31 on 1920x1080, normalised (line 2 of that manifest)
    assert samples[1].boxes[0] == pytest.approx((0, 417 / 1920, 1049 / 1080, 557 / 1920, 1.0))
    assert samples[1].where.endswith("real.manifest:2")


def _write(tmp_path: Path, *records: object) -> Path:
    path = tmp_path / "m.manifest"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{broken", "m.manifest:2: not valid JSON"),
        ({"bb": {}}, "m.manifest:2: no source-ref"),
        ({"source-ref": "s3://bucket/a.jpg", "bb": {}}, "must be a local path"),
        ({"source-ref": "/nonexistent/a.jpg", "bb": {}}, "image /nonexistent/a.jpg not found"),
        ({"source-ref": "IMG"}, "no label attribute 'bb'"),
        ({"source-ref": "IMG", "bb": {"annotations": []}}, "no image_size"),
        (
            {
                "source-ref": "IMG",
                "bb": {
                    "image_size": [{"width": 10, "height": 10}],
                    "annotations": [{"class_id": 3, "left": 0, "top": 0, "width": 5, "height": 5}],
                },
            },
            "class_id 3 is outside 0..1",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, record: object, message: str) -> None:
    image = tmp_path / "a.jpg"
    shutil.copy(PHOTOS / "yellow_box_1_000086.jpg", image)
    good = {
        "source-ref": str(image),
        "bb": {"image_size": [{"width": 10, "height": 10, "depth": 3}], "annotations": []},
    }
    if isinstance(record, dict) and record.get("source-ref") == "IMG":
        record = {**record, "source-ref": str(image)}
    with pytest.raises(ManifestError, match=message):
        read_manifest(_write(tmp_path, good, record), "bb", num_classes=2)


def test_empty_manifest_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.manifest"
    empty.write_text("\n")
    with pytest.raises(ManifestError, match="empty.manifest: manifest has no lines"):
        read_manifest(empty, "bb", 1)
