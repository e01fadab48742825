"""The inference settings the deployment hands to the function (environment and config file)."""

from __future__ import annotations

import json

import pytest

from deeplens_pipeline.deploy.inference_settings import InferenceSettings, infer_topic, parse_labels


def test_environment_and_config_file() -> None:
    settings = InferenceSettings(
        model_name="deploy_model_algo_1",
        labels=("blue_box", "yellow_box"),
        image_shape=512,
        thing_name="deeplens_a",
    )
    assert settings.environment() == {
        "DEEPLENS_MODEL_NAME": "deploy_model_algo_1",
        "DEEPLENS_IMAGE_SHAPE": "512",
        "DEEPLENS_LABELS": '["blue_box","yellow_box"]',
        "DEEPLENS_THRESHOLD": "0.5",
        "DEEPLENS_RESIZE_MODE": "letterbox",
        "DEEPLENS_IOT_TOPIC": "$aws/things/deeplens_a/infer",
    }
    assert json.loads(json.dumps(settings.config_file()))["labels"] == ["blue_box", "yellow_box"]
    without_thing = InferenceSettings(model_name="deploy_m", labels=("a",), image_shape=300)
    assert "DEEPLENS_IOT_TOPIC" not in without_thing.environment()
    assert "iot_topic" not in without_thing.config_file()


def test_from_rendered_templates() -> None:
    settings = InferenceSettings.from_values(
        model_name=" deploy_m ", labels='["bar", "box"]', image_shape="480", threshold="0.4", thing_name=""
    )
    assert (settings.model_name, settings.labels, settings.image_shape, settings.threshold) == (
        "deploy_m",
        ("bar", "box"),
        480,
        0.4,
    )
    assert settings.thing_name is None
    assert parse_labels("bar, box ,") == ("bar", "box")
    assert parse_labels("['blue_box', 'yellow_box']") == ("blue_box", "yellow_box")  # Jinja-rendered list
    assert parse_labels(["bar"]) == ("bar",)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_name": "deploy m"}, "model_name 'deploy m'"),
        ({"labels": []}, "non-empty list"),
        ({"labels": '["a",'}, "not a valid JSON or Python list"),
        ({"labels": ["a", " "]}, "labels\\[1\\]"),
        ({"image_shape": "big"}, "image_shape must be an integer"),
        ({"image_shape": 0}, "outside 1..1024"),
        ({"image_shape": True}, "image_shape must be an integer"),
        ({"threshold": 2}, "outside \\[0, 1\\]"),
        ({"threshold": "x"}, "probability"),
        ({"thing_name": "deeplens abc"}, "not an IoT thing name"),
        ({"resize_mode": "zoom"}, "resize_mode 'zoom'"),
    ],
)
def test_bad_values_name_the_parameter(changes: dict, message: str) -> None:
    values = {"model_name": "deploy_m", "labels": ["a"], "image_shape": 300, **changes}
    with pytest.raises(ValueError, match=message):
        InferenceSettings.from_values(**values)


def test_topic() -> None:
    assert (
        infer_topic("deeplens_Xa6Vbmk7TzuXsNPkmdrPwA") == "$aws/things/deeplens_Xa6Vbmk7TzuXsNPkmdrPwA/infer"
    )


def test_labels_given_as_text_are_parsed_not_split_into_letters() -> None:
    assert InferenceSettings(model_name="deploy_m", labels="bar", image_shape=300).labels == ("bar",)
