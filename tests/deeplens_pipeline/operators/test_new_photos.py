"""``enough_new_photos`` against the emulator: small uploads add up until enough photos wait."""

import json
from types import SimpleNamespace

import pytest

from deeplens_pipeline.groundtruth import LabelledImage
from deeplens_pipeline.operators.new_photos import EnoughNewPhotosOperator

BUCKET = "deeplens-new-photos-test"
CLASSES = ["blue_box", "yellow_box"]
BOX = [{"class_id": 0, "left": 1, "top": 1, "width": 5, "height": 5}]


@pytest.fixture
def s3(empty_bucket, aws_conn):
    return empty_bucket(BUCKET)


def _images(count: int, processed: int) -> dict:
    """The images stage's result: ``count`` usable images, the last ``processed`` new this run."""
    images = [{"key": f"input/{n:03d}.jpg", "sha256": f"{n:064x}"} for n in range(count)]
    return {"images": images, "processed": processed}


def _label(s3, numbers) -> None:
    lines = [
        LabelledImage(f"s3://{BUCKET}/input/{n:03d}.jpg", 10, 10, 3, BOX, digest=f"{n:064x}").to_line(
            "bounding-box", CLASSES
        )
        for n in numbers
    ]
    s3.put_object(Bucket=BUCKET, Key="manifests/labels.manifest", Body="\n".join(lines).encode())


def _choose(images: dict, run_type: str = "asset_triggered", min_new_photos: int = 8) -> tuple[str, dict]:
    pushed = {}
    operator = EnoughNewPhotosOperator(
        task_id="enough_new_photos", images=images, go_on_task_id="label_images", stop_task_id="keep"
    )
    context = {
        "params": {"bucket": BUCKET, "classes": CLASSES, "min_new_photos": min_new_photos},
        "dag_run": SimpleNamespace(run_type=run_type),
        "ti": SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value)),
    }
    return operator.choose_branch(context), pushed["decision"]


def test_two_small_uploads_add_up_to_one_run_that_goes_on(s3):
    _label(s3, range(3))  # three photos labelled (and trained on) by an earlier run
    branch, decision = _choose(_images(8, processed=5))
    assert branch == "keep", decision
    assert (decision["new_photos"], decision["prepared_by_this_run"]) == (5, 5)
    # The next upload: five more. The first five still have no label, so they count again.
    branch, decision = _choose(_images(13, processed=5))
    assert branch == "label_images", decision
    assert (decision["new_photos"], decision["prepared_by_this_run"]) == (10, 5)
    assert "at least min_new_photos=8" in decision["reason"]


def test_once_labelled_they_no_longer_count(s3):
    _label(s3, range(13))
    branch, decision = _choose(_images(13, processed=0))
    assert branch == "keep" and decision["new_photos"] == 0
    # ...unless a person started the run.
    branch, decision = _choose(_images(13, processed=0), run_type="manual")
    assert branch == "label_images" and decision["new_photos"] == 0


def test_no_labels_yet_every_usable_image_waits(s3):
    branch, decision = _choose(_images(8, processed=8), run_type="scheduled")
    assert branch == "label_images" and decision["new_photos"] == 8


def test_photos_a_run_had_labelled_no_longer_count_even_when_left_out(s3):
    """With labeling_backend none, photos without boxes are left out of the labels: once a run has
    sent them for labelling they do not start run after run; a new photo does."""
    from deeplens_pipeline.operators.labeling import LabelImagesOperator

    for n in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"input/{n:03d}.jpg", Body=b"\xff\xd8 not decoded here")
    images = _images(3, processed=3)
    context = {
        "params": {"bucket": BUCKET, "classes": CLASSES, "labeling_backend": "none"},
        "run_id": "manual__2026-11-26T08:00:00+00:00",
        "dag_run": SimpleNamespace(dag_id="deeplens_object_detection"),
    }
    result = LabelImagesOperator(task_id="label_images", images=images).execute(context)
    assert len(result["left_out"]["no boxes and labeling_backend is 'none'"]) == 3
    recorded = s3.get_object(Bucket=BUCKET, Key="manifests/sent-for-labelling.list")["Body"].read().decode()
    assert sorted(line for line in recorded.splitlines() if not line.startswith("#")) == [
        f"{n:064x}" for n in range(3)
    ]
    branch, decision = _choose(_images(3, processed=0), min_new_photos=1)
    assert branch == "keep" and decision["new_photos"] == 0, decision
    branch, decision = _choose(_images(4, processed=1), min_new_photos=1)
    assert branch == "label_images" and decision["new_photos"] == 1, decision


def test_labels_of_classes_the_params_do_not_name_do_not_fail_the_count(s3):
    """Counting reads only each label's image and digest: a renamed class fails labelling (which
    says so), not the branch of a run that stops short."""
    line = json.dumps({"source-ref": f"s3://{BUCKET}/input/000.jpg", "deeplens-source-sha256": f"{0:064x}"})
    s3.put_object(Bucket=BUCKET, Key="manifests/labels.manifest", Body=(line + "\nnot json\n").encode())
    branch, decision = _choose(_images(3, processed=2), min_new_photos=5)
    assert branch == "keep" and decision["new_photos"] == 2, decision
