"""Pre-labels: the current model's detections as Label Studio predictions, and what annotators kept."""

from __future__ import annotations

import pytest

from deeplens_pipeline import label_studio as ls
from deeplens_pipeline.evaluation import Detection, parse_prediction

MODEL_CLASSES = ["blue_box", "yellow_box", "cone"]
CLASSES = ["yellow_box", "blue_box"]  # the project's order differs from the model's: mapped by name


def _rect(x, y, w, h, label, region=None, **extra):
    item = {
        "from_name": ls.FROM_NAME,
        "to_name": ls.TO_NAME,
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
        **extra,
    }
    if region is not None:
        item["id"] = region
    return item


def test_detections_become_rectangles_in_percent_by_class_name_above_the_threshold() -> None:
    body = (
        '{"prediction": [[0, 0.9, 0.1, 0.2, 0.5, 0.6], [1, 0.6, 0.5, 0.5, 1.2, 0.9], '
        "[1, 0.3, 0.0, 0.0, 0.2, 0.2], [2, 0.95, 0.2, 0.2, 0.4, 0.4], [0, 0.8, 0.3, 0.3, 0.3001, 0.5], "
        "[-1, 0.99, 0, 0, 1, 1]]}"
    )
    detections = parse_prediction(body, len(MODEL_CLASSES))
    pre = ls.prediction_results(detections, MODEL_CLASSES, CLASSES, (200, 100), threshold=0.5)
    assert (pre.below_threshold, pre.unmapped, pre.degenerate) == (1, 1, 1)
    first, second = pre.result
    assert first["id"] == "deeplens-pred-0" and second["id"] == "deeplens-pred-1"
    assert first["value"] == {
        "x": 10.0,
        "y": 20.0,
        "width": 40.0,
        "height": 40.0,
        "rotation": 0,
        "rectanglelabels": ["blue_box"],
    }
    assert (first["from_name"], first["to_name"], first["type"]) == ("label", "image", "rectanglelabels")
    assert (first["original_width"], first["original_height"], first["score"]) == (200, 100, 0.9)
    # Clipped to the image (xmax 1.2 → 100 %), class 1 of the model is yellow_box.
    assert second["value"]["x"] == 50.0 and second["value"]["width"] == 50.0
    assert second["value"]["rectanglelabels"] == ["yellow_box"]
    prediction = pre.prediction("7")
    assert prediction == {"model_version": "7", "score": 0.75, "result": pre.result}
    empty = ls.prediction_results([], MODEL_CLASSES, CLASSES, (200, 100), 0.5).prediction("7")
    assert empty["score"] == 0.0 and empty["result"] == []


def test_a_pre_drawn_box_read_back_by_the_manifest_conversion_is_the_model_box() -> None:
    """A kept box becomes the same pixel box in Ground Truth's manifest form."""
    (item,) = ls.prediction_results(
        [Detection(0, 0.9, (0.1, 0.2, 0.5, 0.6))], MODEL_CLASSES, CLASSES, (200, 100), 0.5
    ).result
    task = {"id": 1, "data": {"image": "s3://b/i.jpg"}, "annotations": [{"id": 1, "result": [item]}]}
    result = ls.Conversion()
    ls.convert_task(task, (200, 100, 3), CLASSES, result)
    assert result.images[0].boxes == [{"class_id": 1, "left": 20, "top": 20, "width": 80, "height": 40}]


def test_the_diff_counts_kept_changed_deleted_and_added() -> None:
    predicted = [
        _rect(10, 10, 20, 20, "blue_box", "deeplens-pred-0", score=0.9),  # kept as is
        _rect(50, 50, 20, 20, "blue_box", "deeplens-pred-1", score=0.8),  # moved (same id)
        _rect(70, 10, 10, 10, "yellow_box", "deeplens-pred-2", score=0.7),  # relabelled (same id)
        _rect(5, 60, 10, 10, "yellow_box", "deeplens-pred-3", score=0.6),  # deleted
        _rect(30, 70, 20, 20, "blue_box", "deeplens-pred-4", score=0.6),  # kept, re-id'd
        _rect(80, 80, 10, 10, "blue_box", "deeplens-pred-5", score=0.6),  # redrawn nearby: changed
    ]
    annotated = [
        _rect(10, 10, 20, 20, "blue_box", "deeplens-pred-0"),
        _rect(52, 51, 20, 20, "blue_box", "deeplens-pred-1"),
        _rect(70, 10, 10, 10, "blue_box", "deeplens-pred-2"),
        _rect(30.00001, 70, 20, 20, "blue_box", "xyz"),
        _rect(81, 80, 10, 10, "blue_box", "abc"),
        _rect(1, 1, 5, 5, "yellow_box", "new-1"),  # added
    ]
    diff = ls.diff_prediction(predicted, annotated)
    assert (diff.predicted, diff.kept, diff.changed, diff.deleted, diff.added) == (6, 2, 3, 1, 1)
    report = diff.report()
    assert report["kept_share"] == pytest.approx(2 / 6, abs=1e-4) and report["tasks"] == 1


def test_the_diff_of_an_untouched_prediction_and_of_an_emptied_one() -> None:
    predicted = [_rect(10, 10, 20, 20, "blue_box", "deeplens-pred-0")]
    assert ls.diff_prediction(predicted, predicted).report()["kept"] == 1
    emptied = ls.diff_prediction(predicted, [])
    assert (emptied.kept, emptied.deleted, emptied.added) == (0, 1, 0)
    # A rotated box, or another control's rectangle, is never a kept pre-drawn box.
    rotated = _rect(10, 10, 20, 20, "blue_box", "deeplens-pred-0")
    rotated["value"]["rotation"] = 10
    other = {**_rect(10, 10, 20, 20, "blue_box"), "from_name": "other"}
    assert ls.diff_prediction(predicted, [rotated, other]).deleted == 1


def test_task_diff_takes_the_newest_prediction_and_completed_annotation() -> None:
    old = {"id": 1, "created_at": "2026-11-26T01:00:00Z", "result": [_rect(0, 0, 5, 5, "blue_box", "p")]}
    new = {"id": 2, "created_at": "2026-11-26T02:00:00Z", "result": [_rect(10, 10, 20, 20, "blue_box", "q")]}
    annotations = [
        {"id": 5, "updated_at": "2026-11-26T03:00:00Z", "result": [_rect(10, 10, 20, 20, "blue_box", "q")]},
        {"id": 6, "updated_at": "2026-11-26T04:00:00Z", "was_cancelled": True, "result": []},
    ]
    diff = ls.task_prelabel_diff({"predictions": [old, new], "annotations": annotations})
    assert (diff.kept, diff.deleted, diff.added) == (1, 0, 0)
    assert ls.task_prelabel_diff({"predictions": [], "annotations": annotations}) is None
    assert ls.task_prelabel_diff({"predictions": [new], "annotations": []}) is None
    total = ls.PrelabelDiff()
    total.add(diff)
    total.add(ls.diff_prediction(new["result"], []))
    assert total.report() == {
        "tasks": 2,
        "predicted_boxes": 2,
        "kept": 1,
        "changed": 0,
        "deleted": 1,
        "added": 0,
        "kept_share": 0.5,
    }


def test_the_summary_line_says_what_was_kept_or_why_there_were_no_boxes() -> None:
    review = {
        "model_versions": ["3"],
        "tasks": 4,
        "predicted_boxes": 6,
        "kept": 4,
        "changed": 1,
        "deleted": 1,
        "added": 2,
        "kept_share": 0.6667,
    }
    assert ls.prelabel_summary(review) == (
        "4 of 6 kept unchanged, 1 changed, 1 deleted; 2 drawn by annotators (4 task(s), model version 3)"
    )
    skipped = {"skipped": "model package group deeplens-models-x has no Approved version yet"}
    assert ls.prelabel_summary(skipped) == f"none: {skipped['skipped']}"
    assert ls.prelabel_summary(None) is None
