"""Mean average precision of SSD detections, VOC style (as the built-in algorithm's validation mAP).

Per class, detections from every image are ranked by score; a detection is a true positive when
its IoU with a not-yet-matched ground-truth box of that class reaches the threshold (0.5 by
default: the `overlap_threshold` hyperparameter). AP is the area under the precision envelope
(all-point interpolation, VOC 2010+); mAP is the mean over classes that have ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (xmin, ymin, xmax, ymax) box with each row of `boxes`."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone precision envelope (all-point interpolation)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def mean_average_precision(
    detections: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, list[float | None]]:
    """(mAP, per-class AP or None for classes without ground truth).

    `detections[i]`: rows (class_id, score, xmin, ymin, xmax, ymax) for image i (class_id < 0 ignored),
    as MultiBoxDetection outputs them. `ground_truth[i]`: rows (class_id, xmin, ymin, xmax, ymax).
    """
    if len(detections) != len(ground_truth):
        raise ValueError("one detection array per ground-truth image is needed")
    per_class: list[float | None] = []
    for c in range(num_classes):
        gts = [g[g[:, 0] == c, 1:5] if len(g) else np.zeros((0, 4)) for g in ground_truth]
        n_gt = sum(len(g) for g in gts)
        if n_gt == 0:
            per_class.append(None)
            continue
        scored = []
        for i, d in enumerate(detections):
            d = d[d[:, 0] == c] if len(d) else d
            scored.extend((float(row[1]), i, row[2:6]) for row in d)
        scored.sort(key=lambda t: -t[0])
        matched = [np.zeros(len(g), dtype=bool) for g in gts]
        tp = np.zeros(len(scored))
        for k, (_, i, box) in enumerate(scored):
            if len(gts[i]) == 0:
                continue
            overlaps = iou(box, gts[i])
            j = int(np.argmax(overlaps))
            if overlaps[j] >= iou_threshold and not matched[i][j]:
                matched[i][j] = True
                tp[k] = 1
        if not scored:
            per_class.append(0.0)
            continue
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(scored) + 1)
        per_class.append(average_precision(recall, precision))
    present = [ap for ap in per_class if ap is not None]
    return (float(np.mean(present)) if present else 0.0), per_class
