import random

import pytest

from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.manifest_split import (
    SplitError,
    check_label_width,
    identity,
    read_holdout,
    required_label_width,
    split_labels,
    write_holdout,
)

BOX = [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}]


def images(n, empty=0):
    return [LabelledImage(f"s3://b/{i:03d}.jpg", 10, 10, 3, BOX) for i in range(n)] + [
        LabelledImage(f"s3://b/e{i:03d}.jpg", 10, 10, 3, []) for i in range(empty)
    ]


def test_about_eighty_twenty_and_empty_images_left_out():
    split = split_labels(images(1000, empty=7))
    assert split.dropped_empty == 7 and len(split.train) + len(split.validation) == 1000
    assert 150 <= len(split.validation) <= 250  # each image's own hash: about the fraction
    assert not {i.source_ref for i in split.train} & {i.source_ref for i in split.validation}
    assert split.holdout == {identity(i) for i in split.validation}


def test_reproducible_whatever_the_order():
    items = images(50)
    shuffled = items[:]
    random.Random(3).shuffle(shuffled)
    assert split_labels(items, seed=1) == split_labels(shuffled, seed=1)
    assert split_labels(items, seed=1).validation != split_labels(items, seed=2).validation


def test_new_images_never_move_an_image_between_train_and_the_holdout():
    """The holdout only grows, and nothing in it ever trains, however many images come later."""
    first = split_labels(images(100))
    later = split_labels(images(300), holdout=first.holdout)
    assert {i.source_ref for i in first.validation} <= {i.source_ref for i in later.validation}
    assert {i.source_ref for i in first.train} <= {i.source_ref for i in later.train}
    assert later.new_in_holdout == len(later.validation) - len(first.validation)


def test_a_recorded_holdout_member_stays_whatever_the_seed_or_fraction():
    first = split_labels(images(100), seed=1)
    later = split_labels(images(100), validation_fraction=0.05, seed=2, holdout=first.holdout)
    assert {i.source_ref for i in first.validation} <= {i.source_ref for i in later.validation}


def test_the_same_photo_under_two_names_lands_in_one_half():
    """Identity is the pixels' digest: a copy cannot sit in train while its twin is held out."""
    twins = [
        LabelledImage(f"s3://b/{name}-{i}.jpg", 10, 10, 3, BOX, digest=f"{i:064x}")
        for i in range(200)
        for name in ("a", "copy-of-a")
    ]
    split = split_labels(twins)
    held = {i.digest for i in split.validation}
    assert held and not held & {i.digest for i in split.train}


def test_both_halves_non_empty_and_errors():
    split = split_labels(images(2))
    assert len(split.train) == len(split.validation) == 1  # the lowest hash is borrowed, and kept
    with pytest.raises(SplitError, match="at least one image in each"):
        split_labels(images(1, empty=4))
    with pytest.raises(SplitError, match="params.validation_fraction"):
        split_labels(images(10), validation_fraction=1.0)
    everything = {identity(i) for i in images(3)}
    with pytest.raises(SplitError, match="all 3 labelled image.* are in the fixed holdout"):
        split_labels(images(3), holdout=everything)


def test_the_holdout_list_round_trips():
    members = {"sha256:" + "a" * 64, "ref:s3://b/x.jpg"}
    text = write_holdout(members)
    assert text.startswith("# ") and read_holdout(text) == members


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
