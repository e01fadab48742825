"""Holdout scoring: VOC AP per class (IoU 0.5, all-point interpolation) and mAP, in pure Python."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from deeplens_pipeline.evaluation import (
    Detection,
    EvaluationError,
    average_precision,
    evaluate,
    parse_prediction,
    prediction_uri,
    transform_manifest,
)
from deeplens_pipeline.groundtruth import LabelledImage
from ml_tools.evaluate import mean_average_precision

CLASSES = ["blue_box", "yellow_box"]


def _image(ref: str, *boxes: tuple[int, int, int, int, int], size: int = 100) -> LabelledImage:
    """An image of ``size`` px square with boxes (class, left, top, width, height)."""
    return LabelledImage(
        ref,
        size,
        size,
        3,
        [{"class_id": c, "left": x, "top": y, "width": w, "height": h} for c, x, y, w, h in boxes],
    )


def _det(class_id: int, score: float, *box: float) -> Detection:
    return Detection(class_id, score, (box[0], box[1], box[2], box[3]))


def test_hand_computed_ap_with_a_false_positive_between_hits() -> None:
    """Ranked TP (0.9), FP (0.8), TP (0.7) over two boxes: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    The envelope gives AP = 0.5 * 1 + 0.5 * 2/3 = 5/6."""
    holdout = [_image("s3://b/a.jpg", (0, 10, 10, 20, 20)), _image("s3://b/b.jpg", (0, 50, 50, 40, 40))]
    detections = {
        "s3://b/a.jpg": [_det(0, 0.9, 0.1, 0.1, 0.3, 0.3), _det(0, 0.8, 0.6, 0.0, 0.8, 0.2)],
        "s3://b/b.jpg": [_det(0, 0.7, 0.5, 0.5, 0.9, 0.9)],
    }
    result = evaluate(detections, holdout, CLASSES)
    blue, yellow = result.classes
    assert blue.ap == pytest.approx(5 / 6)
    assert (blue.labelled, blue.detected, blue.true_positives) == (2, 3, 2)
    assert blue.curve == [(0.5, 1.0), (0.5, 0.5), (1.0, pytest.approx(2 / 3))]
    assert yellow.ap is None  # no labelled yellow box: left out of the mean
    assert result.map == pytest.approx(5 / 6)
    assert result.missed == {"s3://b/a.jpg": 0, "s3://b/b.jpg": 0}


def test_a_second_box_on_a_matched_object_and_a_low_iou_box_are_false_positives() -> None:
    holdout = [_image("s3://b/a.jpg", (1, 0, 0, 50, 50), (0, 60, 60, 30, 30))]
    detections = {
        "s3://b/a.jpg": [
            _det(1, 0.95, 0.0, 0.0, 0.5, 0.5),  # hit
            _det(1, 0.9, 0.0, 0.0, 0.5, 0.5),  # duplicate: FP
            _det(0, 0.8, 0.6, 0.6, 0.75, 0.75),  # IoU 0.25 with the blue box: FP
        ]
    }
    result = evaluate(detections, holdout, CLASSES)
    blue, yellow = result.classes
    assert yellow.ap == pytest.approx(1.0)  # the hit ranks first: precision 1 at recall 1
    assert blue.ap == 0.0
    assert result.map == pytest.approx(0.5)
    assert result.missed == {"s3://b/a.jpg": 1}
    assert result.as_dict()["worst_misses"] == [{"source_ref": "s3://b/a.jpg", "missed_boxes": 1}]


def test_a_class_with_boxes_but_no_detection_scores_zero_and_a_missing_answer_is_an_error() -> None:
    holdout = [_image("s3://b/a.jpg", (0, 0, 0, 10, 10), (1, 20, 20, 10, 10))]
    result = evaluate({"s3://b/a.jpg": []}, holdout, CLASSES)
    assert [c.ap for c in result.classes] == [0.0, 0.0]
    assert result.missed == {"s3://b/a.jpg": 2}
    with pytest.raises(EvaluationError, match="no prediction for 1 holdout images"):
        evaluate({}, holdout, CLASSES)


def test_all_point_interpolation_takes_the_envelope() -> None:
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 6)
    assert average_precision([], []) == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_the_ml_tools_numbers_on_random_data(seed: int) -> None:
    """The Airflow task's mAP equals the emulated algorithm's (ml_tools.evaluate, numpy) on the same data."""
    rng = random.Random(seed)
    holdout, detections, np_det, np_gt = [], {}, [], []
    for n in range(12):
        ref = f"s3://b/{n}.jpg"
        boxes = []
        for _ in range(rng.randint(0, 3)):
            x, y = rng.randint(0, 150), rng.randint(0, 150)
            boxes.append((rng.randint(0, 2), x, y, rng.randint(10, 50), rng.randint(10, 50)))
        image = _image(ref, *boxes, size=200)
        holdout.append(image)
        dets = []
        for c, x, y, w, h in boxes:  # near-hits, with jitter, plus clutter
            j = [rng.uniform(-8, 8) for _ in range(4)]
            dets.append(
                _det(
                    c,
                    rng.random(),
                    (x + j[0]) / 200,
                    (y + j[1]) / 200,
                    (x + w + j[2]) / 200,
                    (y + h + j[3]) / 200,
                )
            )
        for _ in range(rng.randint(0, 4)):
            x, y = rng.random() * 0.8, rng.random() * 0.8
            dets.append(_det(rng.randint(0, 2), rng.random(), x, y, x + 0.15, y + 0.15))
        detections[ref] = dets
        np_det.append(np.array([[d.class_id, d.score, *d.box] for d in dets]).reshape(-1, 6))
        gt = [[c, x / 200, y / 200, (x + w) / 200, (y + h) / 200] for c, x, y, w, h in boxes]
        np_gt.append(np.array(gt, dtype=float).reshape(-1, 5))
    ours = evaluate(detections, holdout, ["a", "b", "c"])
    theirs, per_class = mean_average_precision(np_det, np_gt, 3, 0.5)
    assert 0 < theirs < 1  # hits and misses both: a comparison that can fail
    assert ours.map == pytest.approx(theirs)
    assert [c.ap for c in ours.classes] == [pytest.approx(a) if a is not None else None for a in per_class]


def test_parse_prediction_reads_the_algorithms_answer_and_refuses_others() -> None:
    body = json.dumps({"prediction": [[1.0, 0.86, 0.3, 0.07, 0.71, 0.93], [-1.0, 0.1, 0, 0, 0, 0]]})
    assert parse_prediction(body, 2) == [Detection(1, 0.86, (0.3, 0.07, 0.71, 0.93))]
    with pytest.raises(EvaluationError, match="not the algorithm's prediction JSON"):
        parse_prediction(b'{"predictions": []}', 2, "x.out")
    with pytest.raises(EvaluationError, match="row 0 has class 4.0"):
        parse_prediction(json.dumps({"prediction": [[4, 0.5, 0, 0, 1, 1]]}), 2)
    with pytest.raises(EvaluationError, match="row 0 is not"):
        parse_prediction(json.dumps({"prediction": [[0, 0.5, 0, 0]]}), 2)


def test_the_transform_manifest_and_its_answers_names() -> None:
    uris = ["s3://deeplens-x/input/a.jpg", "s3://deeplens-x/input/sub/b.jpg"]
    assert json.loads(transform_manifest(uris)) == [
        {"prefix": "s3://deeplens-x/"},
        "input/a.jpg",
        "input/sub/b.jpg",
    ]
    assert prediction_uri(uris[1], "s3://deeplens-x/evaluation/r/candidate/predictions/") == (
        "s3://deeplens-x/evaluation/r/candidate/predictions/input/sub/b.jpg.out"
    )
    with pytest.raises(EvaluationError, match="several buckets"):
        transform_manifest(["s3://a/x.jpg", "s3://b/y.jpg"])
    with pytest.raises(EvaluationError, match="empty"):
        transform_manifest([])
