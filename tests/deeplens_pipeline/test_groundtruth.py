import json
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from deeplens_pipeline import groundtruth as gt

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "groundtruth"


def _validate(operation: str, request: dict) -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(request, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def _fixture_lines():
    for path in sorted(FIXTURES.glob("*.manifest")):
        yield path, path.read_text().splitlines()


def _attribute(lines):
    record = json.loads(lines[0])
    return next(k[: -len("-metadata")] for k in record if k.endswith("-metadata"))


def test_request_is_valid_for_the_service_model():
    request = gt.create_labeling_job_request(
        job_name="deeplens-label-x",
        label_attribute="bounding-box",
        input_manifest_uri="s3://deeplens-b/m/input.manifest",
        output_uri="s3://deeplens-b/output/",
        role_arn="arn:aws:iam::123456789012:role/r",
        workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t",
        label_config_uri="s3://deeplens-b/l.json",
        ui_template_uri="s3://deeplens-b/t.html",
        region="us-east-1",
        task_title="t",
        task_description="d",
        tags={"a": "b"},
    )
    _validate("CreateLabelingJob", request)
    assert request["HumanTaskConfig"]["PreHumanTaskLambdaArn"] == (
        "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox"
    )
    assert request["HumanTaskConfig"]["AnnotationConsolidationConfig"][
        "AnnotationConsolidationLambdaArn"
    ].endswith("432418664414:function:ACS-BoundingBox")


def test_unsupported_region_names_the_parameter():
    with pytest.raises(gt.GroundTruthError, match=r"params.region: .*af-south-1"):
        gt.builtin_lambda_arns("af-south-1")


def test_label_attribute_suffix_is_refused():
    with pytest.raises(gt.GroundTruthError, match="-metadata"):
        gt.create_labeling_job_request(
            job_name="j",
            label_attribute="x-metadata",
            input_manifest_uri="s3://b/k",
            output_uri="s3://b/",
            role_arn="r",
            workteam_arn="w",
            label_config_uri="s3://b/l",
            ui_template_uri="s3://b/t",
            region="us-east-1",
            task_title="t",
            task_description="d",
        )


def test_label_config_and_input_manifest_formats():
    config = json.loads(gt.label_category_config(["blue_box", "yellow_box"]))
    assert config == {
        "document-version": "2018-11-28",
        "labels": [{"label": "blue_box"}, {"label": "yellow_box"}],
    }
    lines = gt.input_manifest(["s3://b/a.jpg", "s3://b/b.jpg"]).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"source-ref": "s3://b/a.jpg"},
        {"source-ref": "s3://b/b.jpg"},
    ]


def test_ui_template_keeps_liquid_syntax():
    assert "{{ task.input.taskObject | grant_read_access }}" in gt.BOUNDING_BOX_TEMPLATE


def test_real_output_manifests_parse_including_empty_lines():
    total = empty = 0
    for path, lines in _fixture_lines():
        attribute = _attribute(lines)
        classes = sorted(
            {
                name
                for line in lines
                for name in json.loads(line)[f"{attribute}-metadata"]["class-map"].values()
            }
        )
        images = list(gt.parse_manifest(lines, attribute, classes, source=path.name))
        assert len(images) == len(lines)
        summary = gt.summarise(images, classes)
        total += summary.images
        empty += summary.empty
        assert sum(summary.boxes.values()) > 0
    assert total == 1310
    assert empty > 0


def test_class_ids_are_remapped_by_name():
    line = json.dumps(
        {
            "source-ref": "s3://b/a.jpg",
            "lab": {
                "image_size": [{"width": 10, "height": 10, "depth": 3}],
                "annotations": [{"class_id": 0, "left": 1, "top": 1, "width": 2, "height": 2}],
            },
            "lab-metadata": {"class-map": {"0": "yellow_box"}},
        }
    )
    (image,) = gt.parse_manifest([line], "lab", ["blue_box", "yellow_box"])
    assert image.boxes[0]["class_id"] == 1


def test_unknown_class_and_bad_json_name_the_line():
    good = json.dumps(
        {
            "source-ref": "s3://b/a.jpg",
            "lab": {
                "image_size": [{"width": 1, "height": 1}],
                "annotations": [{"class_id": 0, "left": 0, "top": 0, "width": 1, "height": 1}],
            },
            "lab-metadata": {"class-map": {"0": "cat"}},
        }
    )
    with pytest.raises(
        gt.GroundTruthError, match=r"m.manifest, line 2: class 'cat' is not in params.classes"
    ):
        list(gt.parse_manifest(["", good], "lab", ["dog"], source="m.manifest"))
    with pytest.raises(gt.GroundTruthError, match=r"line 1: not JSON"):
        list(gt.parse_manifest(["{oops"], "lab", ["dog"]))


def test_round_trip_and_merge_newest_wins():
    a = gt.LabelledImage(
        "s3://b/a.jpg", 10, 10, 3, [{"class_id": 0, "left": 1, "top": 1, "width": 2, "height": 2}]
    )
    b_old = gt.LabelledImage("s3://b/b.jpg", 10, 10, 3, [])
    b_new = gt.LabelledImage(
        "s3://b/b.jpg", 10, 10, 3, [{"class_id": 1, "left": 0, "top": 0, "width": 5, "height": 5}]
    )
    merged = gt.merge_labels([a, b_old], [b_new])
    assert [i.source_ref for i in merged] == ["s3://b/a.jpg", "s3://b/b.jpg"]
    lines = [i.to_line("lab", ["x", "y"], "job") for i in merged]
    again = list(gt.parse_manifest(lines, "lab", ["x", "y"]))
    assert again == merged


def test_the_labeling_cors_rule_is_added_once_and_existing_rules_are_kept():
    theirs = {"AllowedMethods": ["PUT"], "AllowedOrigins": ["https://example.com"]}
    added = gt.cors_with_labeling_rule([theirs])
    assert added == [theirs, gt.LABELING_CORS_RULE]
    assert gt.cors_with_labeling_rule(added) is None
    assert gt.cors_with_labeling_rule([{"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["*"]}]) is None


def test_task_availability_follows_the_wait_within_the_workforce_limit():
    assert gt.task_availability_seconds(1) == 86400
    assert gt.task_availability_seconds(45) == 30 * 86400
    assert gt.task_availability_seconds(0.0001) == 60
