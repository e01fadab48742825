"""VOC-style mean average precision at IoU 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from ml_tools.evaluate import average_precision, mean_average_precision

GT = [np.array([[0, 0.1, 0.1, 0.4, 0.4], [1, 0.5, 0.5, 0.9, 0.9]]), np.array([[0, 0.2, 0.2, 0.6, 0.6]])]


def _det(*rows: tuple) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(-1, 6)


def test_perfect_detections_score_one() -> None:
    dets = [
        _det((0, 0.9, 0.1, 0.1, 0.4, 0.4), (1, 0.8, 0.5, 0.5, 0.9, 0.9)),
        _det((0, 0.7, 0.2, 0.2, 0.6, 0.6)),
    ]
    assert mean_average_precision(dets, GT, 2) == (1.0, [1.0, 1.0])


def test_wrong_class_or_poor_overlap_scores_zero() -> None:
    dets = [_det((1, 0.9, 0.1, 0.1, 0.4, 0.4), (1, 0.8, 0.0, 0.0, 0.3, 0.3)), _det()]
    score, per_class = mean_average_precision(dets, GT, 2)
    assert per_class == [0.0, 0.0] and score == 0.0


def test_duplicates_count_as_false_positives_and_ranking_matters() -> None:
    # class 0: a duplicate ranked above the second true box -> precision 1, 1/2 then 2/3
    dets = [
        _det((0, 0.9, 0.1, 0.1, 0.4, 0.4), (0, 0.8, 0.1, 0.1, 0.4, 0.4)),
        _det((0, 0.7, 0.2, 0.2, 0.6, 0.6)),
    ]
    _, per_class = mean_average_precision(dets, GT, 2)
    assert per_class[0] == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    assert per_class[1] == 0.0  # class 1 has ground truth but no detection


def test_classes_without_ground_truth_are_left_out() -> None:
    gt = [np.array([[0, 0.1, 0.1, 0.4, 0.4]])]
    score, per_class = mean_average_precision([_det((0, 0.5, 0.1, 0.1, 0.4, 0.4))], gt, 3)
    assert per_class == [1.0, None, None] and score == 1.0


def test_average_precision_envelope() -> None:
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
