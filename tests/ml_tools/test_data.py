"""Decoding, augmentation and batching of training images and boxes."""

from __future__ import annotations

import random

import numpy as np

from ml_tools.data import Dataset, augment, batches, label_array, load_dataset
from ml_tools.manifest import read_manifest


def test_augmented_boxes_stay_valid_and_follow_the_picture() -> None:
    image = np.zeros((128, 128, 3), np.uint8)
    image[32:64, 16:48] = (0, 0, 255)  # a blue square at x 16..48, y 32..64
    boxes = np.array([[0, 16 / 128, 32 / 128, 48 / 128, 64 / 128]], np.float32)
    rng = random.Random(0)
    for _ in range(200):
        pixels, out = augment(image, boxes, rng)
        assert pixels.shape == (128, 128, 3) and pixels.dtype == np.float32
        assert len(out) == 1, "a labelled object is never cropped away"
        _, x0, y0, x1, y1 = out[0]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        # the box still frames blue pixels
        cx, cy = int((x0 + x1) / 2 * 128), int((y0 + y1) / 2 * 128)
        r, g, b = pixels[cy, cx]
        assert b > r + 40 and b > g + 40


def test_label_array_pads_with_minus_one() -> None:
    labels = label_array([np.array([[1, 0.1, 0.1, 0.2, 0.2]]), np.zeros((0, 5))], max_objects=3)
    assert labels.shape == (2, 3, 5)
    assert np.allclose(labels[0, 0], [1, 0.1, 0.1, 0.2, 0.2])
    assert (labels[0, 1:] == -1).all() and (labels[1] == -1).all()


def test_batches_wrap_the_last_one_and_report_real_count() -> None:
    data = Dataset(np.zeros((5, 8, 8, 3), np.uint8), [np.zeros((0, 5), np.float32)] * 5)
    out = list(batches(data, 2, 1, None))
    assert [real for _, _, real in out] == [2, 2, 1]
    assert all(pixels.shape == (2, 3, 8, 8) for pixels, _, _ in out)


def test_load_dataset_decodes_at_the_data_shape(sample_manifests) -> None:
    train, _, _ = sample_manifests
    samples = read_manifest(train, "bb", 2)
    data = load_dataset(samples[:3], 96)
    assert data.images.shape == (3, 96, 96, 3) and len(data.boxes) == 3
