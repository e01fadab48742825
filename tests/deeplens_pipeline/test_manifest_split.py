import random

import pytest

from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.manifest_split import SplitError, check_label_width, required_label_width, split_labels

BOX = [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}]


def images(n, empty=0):
    return [LabelledImage(f"s3://b/{i:03d}.jpg", 10, 10, 3, BOX) for i in range(n)] + [
        LabelledImage(f"s3://b/e{i:03d}.jpg", 10, 10, 3, []) for i in range(empty)
    ]


def test_eighty_twenty_and_empty_images_left_out():
    split = split_labels(images(100, empty=7))
    assert (len(split.train), len(split.validation), split.dropped_empty) == (80, 20, 7)
    assert not {i.source_ref for i in split.train} & {i.source_ref for i in split.validation}


def test_reproducible_whatever_the_order():
    items = images(50)
    shuffled = items[:]
    random.Random(3).shuffle(shuffled)
    assert split_labels(items, seed=1) == split_labels(shuffled, seed=1)
    assert split_labels(items, seed=1).validation != split_labels(items, seed=2).validation


def test_adding_images_keeps_most_assignments():
    before = {i.source_ref for i in split_labels(images(100)).validation}
    after = {i.source_ref for i in split_labels(images(110)).validation}
    assert len(before & after) >= 15


def test_both_halves_non_empty_and_errors():
    split = split_labels(images(2))
    assert len(split.train) == len(split.validation) == 1
    with pytest.raises(SplitError, match="at least one image in each"):
        split_labels(images(1, empty=4))
    with pytest.raises(SplitError, match="params.validation_fraction"):
        split_labels(images(10), validation_fraction=1.0)


def _busy(ref: str, boxes: int) -> LabelledImage:
    box = {"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}
    return LabelledImage(ref, 100, 100, 3, [dict(box) for _ in range(boxes)])


def test_label_width_must_fit_the_busiest_image():
    images = [_busy("s3://b/a.jpg", 1), _busy("s3://b/busy.jpg", 10), _busy("s3://b/c.jpg", 2)]
    split = split_labels(images, 0.34, 0)
    assert required_label_width(images) == 52
    check_label_width(split, 52)
    with pytest.raises(SplitError) as err:
        check_label_width(split, 50)
    message = str(err.value)
    assert message.startswith("params.label_width: 50 is too small")
    assert "s3://b/busy.jpg has 10 boxes" in message and ">= 52" in message
