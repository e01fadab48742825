"""Which photos count towards ``min_new_photos``: those waiting for a label, whichever run prepared them."""

import pytest

from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.new_photos import (
    decide,
    label_refs,
    photo_mark,
    queue_region,
    read_marks,
    waiting_photos,
    write_marks,
)

BOX = [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}]


def uri(key: str) -> str:
    return f"s3://b/{key}"


def image(n: int, digest: str | None = None) -> dict:
    return {"key": f"input/{n:03d}.jpg", "sha256": digest if digest is not None else f"{n:064x}"}


def label(n: int, digest: str | None = None) -> LabelledImage:
    return LabelledImage(uri(f"input/{n:03d}.jpg"), 10, 10, 3, BOX, digest=digest)


def test_images_without_a_label_wait_whichever_run_prepared_them():
    labels = [label(n, f"{n:064x}") for n in range(3)]
    assert waiting_photos([image(n) for n in range(3)], labels, uri) == 0
    assert waiting_photos([image(n) for n in range(8)], labels, uri) == 5
    assert waiting_photos([image(n) for n in range(13)], labels, uri) == 10
    assert waiting_photos([], labels, uri) == 0


def test_a_replaced_photo_waits_again_a_moved_one_does_not():
    labels = [label(0, f"{0:064x}"), label(1, f"{1:064x}")]
    replaced = [image(0, "f" * 64), image(1)]
    assert waiting_photos(replaced, labels, uri) == 1
    moved = [{"key": "input/renamed.jpg", "sha256": f"{0:064x}"}, image(1)]
    assert waiting_photos(moved, labels, uri) == 0


def test_labels_older_than_digests_and_images_without_one_match_by_name():
    assert waiting_photos([image(0), image(1)], [label(0)], uri) == 1
    assert waiting_photos([image(0, ""), image(1, "")], [label(0, f"{0:064x}")], uri) == 1


def test_the_reason_says_how_many_this_run_prepared():
    stopped = decide(5, 8, "asset_triggered", prepared=5)
    assert not stopped.go_on
    assert "5 new photo(s) not yet labelled (5 prepared by this run)" in stopped.reason
    assert "fewer than min_new_photos=8" in stopped.reason
    went_on = decide(10, 8, "asset_triggered", prepared=5)
    assert went_on.go_on and went_on.as_dict()["prepared_by_this_run"] == 5
    assert "prepared_by_this_run" not in decide(1, 1, "manual").as_dict()
    with pytest.raises(ValueError):
        decide(1, 1, "manual", prepared=-1)


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/deeplens-photos", "eu-west-1"),
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/deeplens-photos", "us-gov-west-1"),
        ("https://sqs.ap-southeast-2.api.aws/123456789012/deeplens-photos", "ap-southeast-2"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/deeplens-photos", "cn-north-1"),
        ("https://us-west-2.queue.amazonaws.com/123456789012/deeplens-photos", "us-west-2"),
        ("http://127.0.0.1:5000/123456789012/deeplens-photos", None),
        ("https://sqs.example.com/123456789012/deeplens-photos", None),
    ],
)
def test_the_queue_url_names_its_region(url, region):
    assert queue_region(url) == region


def test_photos_sent_for_labelling_no_longer_wait_by_digest_so_a_moved_one_neither():
    images = [image(n) for n in range(4)]
    sent = read_marks(write_marks([photo_mark(i, uri) for i in images[:3]]))
    assert waiting_photos(images, [], uri, sent) == 1
    moved = [{"key": "input/elsewhere.jpg", "sha256": f"{0:064x}"}]
    assert waiting_photos(moved, [], uri, sent) == 0
    replaced = [image(0, "e" * 64)]
    assert waiting_photos(replaced, [], uri, sent) == 1
    no_digest = [image(9, "")]
    assert waiting_photos(no_digest, [], uri, {uri("input/009.jpg")}) == 0


def test_the_count_reads_only_each_labels_image_and_digest():
    lines = [
        '{"source-ref": "s3://b/input/000.jpg", "deeplens-source-sha256": "ab"}',
        "not json",
        '{"no-source": 1}',
        '{"source-ref": "s3://b/input/001.jpg", "bounding-box": {"annotations": [{"class_id": 99}]}}',
    ]
    refs = label_refs(lines)
    assert [(r.source_ref, r.digest) for r in refs] == [
        ("s3://b/input/000.jpg", "ab"),
        ("s3://b/input/001.jpg", None),
    ]
