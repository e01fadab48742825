"""The inference function's pure logic: configuration, geometry, detections and payloads."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import deeplens_logic as logic
import pytest

pytest.importorskip("hypothesis", reason="property tests run in the Airflow env (hypothesis is there)")
from hypothesis import given
from hypothesis import strategies as st

from deeplens_pipeline.deploy import inference_settings

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "include" / "lambda"
THING_ENV = {"AWS_IOT_THING_NAME": "deeplens_abc123"}
BASE_ENV = {
    "DEEPLENS_MODEL_NAME": "deploy_model_algo_1",
    "DEEPLENS_IMAGE_SHAPE": "512",
    "DEEPLENS_LABELS": '["blue_box", "yellow_box"]',
}


@pytest.mark.parametrize("path", sorted(LAMBDA_DIR.glob("*.py")), ids=lambda p: p.name)
def test_every_function_file_parses_as_python_37(path: Path) -> None:
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 7))


def test_python_37_check_rejects_newer_syntax() -> None:
    with pytest.raises(SyntaxError):
        ast.parse("if (n := 1):\n    pass\n", feature_version=(3, 7))


# -- configuration ----------------------------------------------------------------------------


def test_config_from_environment_with_defaults(tmp_path: Path) -> None:
    config = logic.load_config({**BASE_ENV, **THING_ENV}, str(tmp_path / "absent.json"))
    assert config == logic.InferenceConfig(
        model_name="deploy_model_algo_1",
        image_shape=512,
        labels=("blue_box", "yellow_box"),
        threshold=0.5,
        iot_topic="$aws/things/deeplens_abc123/infer",
        resize_mode="letterbox",
        results_fifo="/tmp/results.mjpeg",
        display_resolution="480p",
    )


def test_environment_wins_over_file_and_file_fills_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "deeplens_config.json"
    path.write_text(
        json.dumps({"model_name": "deploy_from_file", "image_shape": 300, "labels": ["a"], "threshold": 0.25})
    )
    config = logic.load_config({"DEEPLENS_MODEL_NAME": "deploy_from_env", **THING_ENV}, str(path))
    assert config.model_name == "deploy_from_env"
    assert (config.image_shape, config.labels, config.threshold) == (300, ("a",), 0.25)


def test_file_alone_is_enough_with_an_explicit_topic(tmp_path: Path) -> None:
    path = tmp_path / "deeplens_config.json"
    path.write_text(
        json.dumps({"model_name": "deploy_x", "image_shape": "480", "labels": ["bar"], "iot_topic": "t/x"})
    )
    config = logic.load_config({}, str(path))
    assert (config.image_shape, config.iot_topic) == (480, "t/x")


def test_missing_setting_names_variable_and_file(tmp_path: Path) -> None:
    env = {key: value for key, value in BASE_ENV.items() if key != "DEEPLENS_LABELS"}
    with pytest.raises(logic.ConfigError, match=r"'labels'.*DEEPLENS_LABELS.*absent\.json"):
        logic.load_config({**env, **THING_ENV}, str(tmp_path / "absent.json"))


def test_missing_topic_without_thing_name(tmp_path: Path) -> None:
    with pytest.raises(logic.ConfigError, match="AWS_IOT_THING_NAME"):
        logic.load_config(BASE_ENV, str(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEEPLENS_IMAGE_SHAPE", "abc", "DEEPLENS_IMAGE_SHAPE: expected an integer"),
        ("DEEPLENS_IMAGE_SHAPE", "2048", "outside 1..1024"),
        ("DEEPLENS_LABELS", "bar,box", "JSON list"),
        ("DEEPLENS_LABELS", "[]", "non-empty list"),
        ("DEEPLENS_LABELS", '["ok", ""]', "class name #1"),
        ("DEEPLENS_THRESHOLD", "1.5", "outside"),
        ("DEEPLENS_THRESHOLD", "high", "probability"),
        ("DEEPLENS_RESIZE_MODE", "zoom", "not one of"),
        ("DEEPLENS_MODEL_NAME", "../etc/passwd", "file prefix"),
        ("DEEPLENS_DISPLAY_RESOLUTION", "4k", "not one of"),
    ],
)
def test_bad_values_name_their_source(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(logic.ConfigError, match=message) as error:
        logic.load_config({**BASE_ENV, **THING_ENV, name: value}, str(tmp_path / "absent.json"))
    assert name in str(error.value)


def test_bad_config_files(tmp_path: Path) -> None:
    path = tmp_path / "deeplens_config.json"
    path.write_text("{not json")
    with pytest.raises(logic.ConfigError, match="not valid JSON"):
        logic.load_config(THING_ENV, str(path))
    path.write_text('["a list"]')
    with pytest.raises(logic.ConfigError, match="expected a JSON object"):
        logic.load_config(THING_ENV, str(path))
    path.write_text('{"modelname": "typo"}')
    with pytest.raises(logic.ConfigError, match="unknown keys \\['modelname'\\]"):
        logic.load_config(THING_ENV, str(path))


def test_default_config_path_is_beside_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logic.CONFIG_FILE_ENV, raising=False)
    assert logic.default_config_path("/x/y/deeplens_inference.py") == "/x/y/deeplens_config.json"
    monkeypatch.setenv(logic.CONFIG_FILE_ENV, "/etc/deeplens.json")
    assert logic.default_config_path("/x/y/deeplens_inference.py") == "/etc/deeplens.json"


def test_pipeline_settings_are_read_back_by_the_function(tmp_path: Path) -> None:
    """What the Airflow side writes (environment and config file) is what the device reads."""
    settings = inference_settings.InferenceSettings(
        model_name="deploy_model_algo_1",
        labels=("blue_box", "yellow box"),
        image_shape=480,
        threshold=0.35,
        thing_name="deeplens_xyz",
        resize_mode="crop",
    )
    from_env = logic.load_config(settings.environment(), str(tmp_path / "absent.json"))
    path = tmp_path / "deeplens_config.json"
    path.write_text(json.dumps(settings.config_file()))
    from_file = logic.load_config({}, str(path))
    for config in (from_env, from_file):
        assert config.model_name == settings.model_name
        assert config.labels == settings.labels
        assert config.image_shape == settings.image_shape
        assert config.threshold == settings.threshold
        assert config.resize_mode == settings.resize_mode
        assert config.iot_topic == "$aws/things/deeplens_xyz/infer"
    for field, name in inference_settings.ENVIRONMENT_NAMES.items():
        assert logic.ENVIRONMENT_NAMES[field] == name


# -- geometry ---------------------------------------------------------------------------------


def test_stretch_maps_model_pixels_to_the_whole_frame() -> None:
    transform = logic.model_to_frame(1920, 1080, 512, "stretch")
    assert transform == logic.Transform(3.75, 2.109375, 0.0, 0.0)


def test_letterbox_removes_the_padding() -> None:
    # 1920x1080 padded to 1920x1920 (420 px above and below), shown to the model at 480 px.
    transform = logic.model_to_frame(1920, 1080, 480, "letterbox")
    assert transform == logic.Transform(4.0, 4.0, 0.0, -420.0)
    region = logic.input_region(1920, 1080, "letterbox")
    assert region == logic.InputRegion("letterbox", 1920, 0, 420)


def test_crop_adds_the_cropped_margin() -> None:
    transform = logic.model_to_frame(1920, 1080, 300, "crop")
    assert transform == logic.Transform(3.6, 3.6, 420.0, 0.0)
    assert logic.input_region(1920, 1080, "crop") == logic.InputRegion("crop", 1080, 420, 0)


@pytest.mark.parametrize("mode", logic.RESIZE_MODES)
@given(
    width=st.integers(16, 4000),
    height=st.integers(16, 4000),
    size=st.sampled_from([300, 480, 512]),
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
)
def test_model_corners_land_on_the_frame_content(mode, width, height, size, fx, fy) -> None:
    """A model point inside the frame's content maps inside the frame, and the corners match."""
    transform = logic.model_to_frame(width, height, size, mode)
    region = logic.input_region(width, height, mode)
    if mode == "letterbox":
        # content spans [left, left+width] x [top, top+height] of the padded square
        mx = (region.left + fx * width) * size / region.side
        my = (region.top + fy * height) * size / region.side
    elif mode == "crop":
        mx, my = fx * size, fy * size
    else:
        mx, my = fx * size, fy * size
    x = mx * transform.scale_x + transform.offset_x
    y = my * transform.scale_y + transform.offset_y
    assert -1e-6 <= x <= width + 1e-6
    assert -1e-6 <= y <= height + 1e-6
    if mode == "letterbox":
        assert x == pytest.approx(fx * width, abs=1e-6)
        assert y == pytest.approx(fy * height, abs=1e-6)


def test_bad_geometry_inputs() -> None:
    with pytest.raises(ValueError, match="frame size"):
        logic.input_region(0, 10, "stretch")
    with pytest.raises(ValueError, match="resize mode"):
        logic.input_region(10, 10, "zoom")
    with pytest.raises(ValueError, match="input size"):
        logic.model_to_frame(10, 10, 0, "stretch")


# -- detections and payloads ------------------------------------------------------------------


def _parsed(*objects: dict) -> dict:
    return {"ssd": list(objects)}


def test_detections_threshold_map_scale_and_sort() -> None:
    transform = logic.model_to_frame(1024, 512, 512, "stretch")  # x * 2, y * 1
    parsed = _parsed(
        {"label": 0, "prob": 0.30, "xmin": 10, "ymin": 10, "xmax": 20, "ymax": 20},
        {"label": "1", "prob": 0.91, "xmin": 100, "ymin": 50, "xmax": 200, "ymax": 150},
        {"label": 0.0, "prob": 0.55, "xmin": 500, "ymin": 400, "xmax": 600, "ymax": 700},
        {"label": 7, "prob": 0.60, "xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
    )
    found = logic.detections(parsed, ("blue_box", "yellow_box"), 0.5, transform, 1024, 512)
    assert [d.label for d in found] == ["yellow_box", "class_7", "blue_box"]
    assert found[0] == logic.Detection("yellow_box", 1, 0.91, 200, 50, 400, 150)
    # boxes are clipped to the frame
    assert found[2][3:] == (1000, 400, 1023, 511)


def test_threshold_is_inclusive_and_swapped_corners_are_ordered() -> None:
    transform = logic.Transform(1.0, 1.0, 0.0, 0.0)
    parsed = _parsed({"label": 0, "prob": 0.5, "xmin": 30, "ymin": 40, "xmax": 10, "ymax": 20})
    (found,) = logic.detections(parsed, ("a",), 0.5, transform, 100, 100)
    assert (found.xmin, found.ymin, found.xmax, found.ymax) == (10, 20, 30, 40)


def test_missing_model_type_is_reported() -> None:
    with pytest.raises(ValueError, match="no 'ssd' entry \\(keys: \\['classification'\\]\\)"):
        logic.detections({"classification": []}, ("a",), 0.5, logic.Transform(1, 1, 0, 0), 10, 10)


def test_payloads() -> None:
    found = [
        logic.Detection("bar", 0, 0.87654, 1, 2, 3, 4),
        logic.Detection("bar", 0, 0.5, 1, 2, 3, 4),
        logic.Detection("box", 1, 0.6, 1, 2, 3, 4),
    ]
    body = json.loads(logic.detections_payload(found))
    assert {k: v for k, v in body.items() if k != "detections"} == {"bar": 0.8765, "box": 0.6}
    assert [d["prob"] for d in body["detections"]] == [0.8765, 0.6, 0.5]  # every one, best first
    assert len(body["detections"]) == len(found)
    for item, detection in zip(body["detections"], sorted(found, key=lambda d: -d.prob), strict=True):
        assert item == {
            "label": detection.label,
            "prob": round(detection.prob, 4),
            "xmin": detection.xmin,
            "ymin": detection.ymin,
            "xmax": detection.xmax,
            "ymax": detection.ymax,
        }
    assert logic.detections_payload([]) == "{}"
    assert json.loads(logic.status_payload("loading")) == {"status": "loading"}
    assert logic.annotation_text(found[0]) == "bar: 87.65%"
    assert logic.caption_origin(logic.Detection("a", 0, 1.0, 5, 100, 9, 200)) == (5, 85)
    assert logic.caption_origin(logic.Detection("a", 0, 1.0, 5, 3, 9, 200)) == (5, 15)


def test_error_payload_names_the_line() -> None:
    def failing() -> None:
        raise RuntimeError("camera unplugged")

    try:
        failing()
    except RuntimeError as exc:
        payload = json.loads(logic.error_payload("inference", exc))
    assert payload["error"] == "RuntimeError: camera unplugged"
    assert payload["stage"] == "inference"
    assert payload["where"].startswith("test_deeplens_logic.py:")
    assert payload["where"].endswith(" in failing")


def test_backoff_doubles_up_to_a_ceiling() -> None:
    waits = []
    current = 0.0
    for _ in range(8):
        current = logic.next_backoff(current)
        waits.append(current)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_mirrored_rules_agree_with_the_pipeline() -> None:
    """The device cannot import the plugin package, so the few rules both sides need are copies."""
    assert logic.RESIZE_MODES == inference_settings.RESIZE_MODES
    assert logic.MAX_INPUT_SIZE == inference_settings.MAX_INPUT_SIZE
    assert logic.default_topic("deeplens_abc") == inference_settings.infer_topic("deeplens_abc")
    for name in ("deploy_model_algo_1", "deploy m", "../etc/passwd", "x.y-z"):
        assert bool(logic._MODEL_NAME_PATTERN.match(name)) == bool(inference_settings._MODEL_NAME.match(name))
