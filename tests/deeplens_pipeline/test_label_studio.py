"""Label Studio's annotations become exactly the manifest lines Ground Truth writes."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deeplens_pipeline import groundtruth as gt
from deeplens_pipeline import label_studio as ls

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "groundtruth"
CLASSES = ["storage box"]


def _rect(box, width, height, label="storage box", **extra):
    return {
        "from_name": ls.FROM_NAME,
        "to_name": ls.TO_NAME,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "value": {
            "x": box["left"] / width * 100,
            "y": box["top"] / height * 100,
            "width": box["width"] / width * 100,
            "height": box["height"] / height * 100,
            "rotation": 0,
            "rectanglelabels": [label],
            **extra,
        },
    }


def _task(image, annotations, task_id=1):
    return {"id": task_id, "data": ls.task_data(image, "b"), "annotations": annotations}


def _annotation(result, *, updated="2026-11-26T10:00:00Z", cancelled=False, annotation_id=1):
    return {
        "id": annotation_id,
        "result": result,
        "was_cancelled": cancelled,
        "created_at": updated,
        "updated_at": updated,
    }


def _shape(value):
    """The nested key structure of a JSON value (dict keys and list element shapes)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.manifest")), ids=lambda p: p.name[:20])
def test_the_converted_lines_match_ground_truth_s_own(fixture):
    """Each real Ground Truth line, redrawn in Label Studio, converts back to the same label and shape."""
    for raw in fixture.read_text().splitlines():
        record = json.loads(raw)
        label = record["bb"]
        size = label["image_size"][0]
        width, height = size["width"], size["height"]
        result = ls.Conversion()
        task = _task(
            record["source-ref"],
            [_annotation([_rect(box, width, height) for box in label["annotations"]])],
        )
        ls.convert_task(task, (width, height, size["depth"]), CLASSES, result)
        line = json.loads(
            ls.manifest_line(result.images[0], "bb", CLASSES, "job", datetime(2026, 11, 26, tzinfo=UTC))
        )
        ours, theirs = (
            dict(line),
            {k: v for k, v in record.items() if k in ("source-ref", "bb", "bb-metadata")},
        )
        assert ours["bb"]["image_size"] == label["image_size"]
        assert ours["bb"]["annotations"] == [{**box, "class_id": 0} for box in label["annotations"]]
        assert ours["bb-metadata"]["class-map"] == theirs["bb-metadata"]["class-map"]
        # The same keys at every level (the confidence's value differs: a person drew ours).
        assert _shape(ours) == _shape(theirs)
        parsed = next(gt.parse_manifest([json.dumps(line)], "bb", CLASSES))
        assert parsed.boxes == ours["bb"]["annotations"]


def test_the_newest_completed_annotation_wins_and_a_skip_does_not():
    image = "s3://b/input/a.jpg"
    old = _annotation(
        [_rect({"left": 0, "top": 0, "width": 10, "height": 10}, 100, 100)], updated="2026-01-01"
    )
    new = _annotation(
        [_rect({"left": 50, "top": 50, "width": 20, "height": 20}, 100, 100)],
        updated="2026-02-01",
        annotation_id=2,
    )
    skip = _annotation([], updated="2026-03-01", cancelled=True, annotation_id=3)
    result = ls.Conversion()
    ls.convert_task(_task(image, [old, skip, new]), (100, 100, 3), CLASSES, result)
    assert result.images[0].boxes == [{"class_id": 0, "left": 50, "top": 50, "width": 20, "height": 20}]
    assert result.superseded_annotations == 1


def test_a_skipped_task_and_an_unanswered_one_are_reported_not_labelled():
    result = ls.Conversion()
    ls.convert_task(_task("s3://b/i/s.jpg", [_annotation([], cancelled=True)]), (10, 10, 3), CLASSES, result)
    ls.convert_task(_task("s3://b/i/u.jpg", []), (10, 10, 3), CLASSES, result)
    assert result.images == []
    assert result.skipped == ["s3://b/i/s.jpg"] and result.unanswered == ["s3://b/i/u.jpg"]


def test_a_submitted_annotation_without_boxes_is_an_empty_image():
    result = ls.Conversion()
    ls.convert_task(_task("s3://b/i/e.jpg", [_annotation([])]), (10, 20, 3), CLASSES, result)
    assert result.images[0].boxes == [] and (result.images[0].width, result.images[0].height) == (10, 20)


def test_a_box_outside_the_image_is_clipped_and_one_wholly_outside_is_dropped():
    partly = _rect({"left": -20, "top": 90, "width": 40, "height": 30}, 100, 100)
    outside = _rect({"left": 120, "top": 10, "width": 10, "height": 10}, 100, 100)
    result = ls.Conversion()
    ls.convert_task(_task("s3://b/i/c.jpg", [_annotation([partly, outside])]), (100, 100, 3), CLASSES, result)
    assert result.images[0].boxes == [{"class_id": 0, "left": 0, "top": 90, "width": 20, "height": 10}]
    assert (result.clipped_boxes, result.dropped_boxes) == (1, 1)


def test_a_rotated_rectangle_becomes_the_box_that_holds_it():
    rect = _rect({"left": 10, "top": 10, "width": 20, "height": 10}, 100, 100, rotation=90)
    result = ls.Conversion()
    ls.convert_task(_task("s3://b/i/r.jpg", [_annotation([rect])]), (100, 100, 3), CLASSES, result)
    assert result.images[0].boxes == [{"class_id": 0, "left": 0, "top": 10, "width": 10, "height": 20}]


def test_a_label_outside_the_classes_names_the_task():
    rect = _rect({"left": 1, "top": 1, "width": 5, "height": 5}, 100, 100, label="cat")
    with pytest.raises(ls.LabelStudioError, match=r"task 7 .*'cat' is not in params.classes"):
        ls.convert_task(
            _task("s3://b/i/x.jpg", [_annotation([rect])], task_id=7), (100, 100, 3), CLASSES, ls.Conversion()
        )


def test_classes_added_between_runs_grow_the_interface_and_a_rename_is_refused():
    assert ls.reconcile_classes(["a"], ["a", "b"], "p") is True
    assert ls.reconcile_classes(["b", "a"], ["a", "b"], "p") is False
    with pytest.raises(ls.LabelStudioError, match=r"lacks \['a'\].*renamed or removed"):
        ls.reconcile_classes(["a", "b"], ["A", "b"], "p")


def test_the_interface_round_trips_its_classes_even_with_quotes():
    classes = ['box "big"', "cat & dog", "<x>"]
    assert ls.config_labels(ls.label_config(classes)) == classes
    with pytest.raises(ls.LabelStudioError, match="no <RectangleLabels"):
        ls.config_labels("<View><Image name='image' value='$image'/></View>")


def test_the_project_title_is_stable_short_and_apart_per_environment():
    a = ls.project_title("prod", "dag", "deeplens-" + "x" * 54, "input/")
    assert a == ls.project_title("prod", "dag", "deeplens-" + "x" * 54, "input/")
    assert len(a) <= ls.TITLE_MAX
    assert a != ls.project_title("dev", "dag", "deeplens-" + "x" * 54, "input/")


@given(
    st.integers(1, 4000),
    st.integers(1, 4000),
    st.floats(-50, 150),
    st.floats(-50, 150),
    st.floats(0, 200),
    st.floats(0, 200),
)
def test_every_converted_box_lies_inside_its_image(width, height, x, y, w, h):
    rect = {
        "from_name": ls.FROM_NAME,
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": ["storage box"]},
    }
    result = ls.Conversion()
    ls.convert_task(_task("s3://b/i/p.jpg", [_annotation([rect])]), (width, height, 3), CLASSES, result)
    for box in result.images[0].boxes:
        assert box["left"] >= 0 and box["left"] + box["width"] <= width
        assert box["top"] >= 0 and box["top"] + box["height"] <= height
        assert box["width"] >= 1 and box["height"] >= 1
