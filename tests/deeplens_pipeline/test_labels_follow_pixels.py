"""Labels belong to the pixels they were drawn on: replaced, moved and deleted photos."""

from deeplens_pipeline.groundtruth import LabelledImage, parse_manifest, reconcile_with_images

BOX = [{"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}]


def label(uri, digest):
    return LabelledImage(uri, 10, 10, 3, BOX, digest=digest)


def test_a_replaced_photo_loses_its_boxes_a_moved_one_keeps_them_a_deleted_one_leaves():
    labels = [
        label("s3://b/i/same.jpg", "A"),
        label("s3://b/i/turned.jpg", "B"),
        label("s3://b/i/old.jpg", "C"),
        label("s3://b/i/gone.jpg", "D"),
    ]
    current = {"s3://b/i/same.jpg": "A", "s3://b/i/turned.jpg": "B2", "s3://b/i/new.jpg": "C"}
    result = reconcile_with_images(labels, current)
    assert [(x.source_ref, x.digest) for x in result.labels] == [
        ("s3://b/i/new.jpg", "C"),
        ("s3://b/i/same.jpg", "A"),
    ]
    assert result.moved == [("s3://b/i/old.jpg", "s3://b/i/new.jpg")]
    assert [(x.source_ref, reason.split(":")[0]) for x, reason in result.withdrawn] == [
        ("s3://b/i/turned.jpg", "the photo was replaced"),
        ("s3://b/i/gone.jpg", "the photo is no longer among the images"),
    ]
    assert result.changed


def test_labels_older_than_digests_adopt_today_s_and_nothing_else_changes():
    result = reconcile_with_images([label("s3://b/i/a.jpg", None)], {"s3://b/i/a.jpg": "A"})
    assert result.labels[0].digest == "A" and result.changed and not result.withdrawn
    again = reconcile_with_images(result.labels, {"s3://b/i/a.jpg": "A"})
    assert not again.changed


def test_a_move_never_overwrites_the_labels_an_image_already_has():
    labels = [label("s3://b/i/old.jpg", "C"), label("s3://b/i/new.jpg", "C")]
    result = reconcile_with_images(labels, {"s3://b/i/new.jpg": "C"})
    assert [x.source_ref for x in result.labels] == ["s3://b/i/new.jpg"]
    assert result.withdrawn[0][0].source_ref == "s3://b/i/old.jpg"


def test_the_digest_survives_the_manifest_and_training_ignores_it():
    line = label("s3://b/i/a.jpg", "A").to_line("bb", ["box"])
    assert '"deeplens-source-sha256":"A"' in line
    assert next(parse_manifest([line], "bb", ["box"])).digest == "A"
