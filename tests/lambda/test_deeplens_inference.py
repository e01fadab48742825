"""The inference function as the device runs it: the loop starts at import.

The device libraries are test doubles (``conftest.py``); the function's code runs for real: the
loop optimises and loads the model, infers scripted frames, publishes the payloads and draws the
boxes, until the camera double runs out of frames.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip(
    "numpy", reason="the device code needs numpy: run in the ML tools env (-c tests/lambda/pytest.ini)"
)

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "include" / "lambda"
Device = Any

TOPIC = "$aws/things/deeplens_abc123/infer"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = {
        "AWS_IOT_THING_NAME": "deeplens_abc123",
        "DEEPLENS_MODEL_NAME": "deploy_model_algo_1",
        "DEEPLENS_IMAGE_SHAPE": "512",
        "DEEPLENS_LABELS": '["blue_box", "yellow_box"]',
        "DEEPLENS_THRESHOLD": "0.5",
        "DEEPLENS_RESULTS_FIFO": str(tmp_path / "results.mjpeg"),
        "DEEPLENS_CONFIG_FILE": str(tmp_path / "no-config.json"),
    }
    for name in ("DEEPLENS_IOT_TOPIC", "DEEPLENS_RESIZE_MODE", "DEEPLENS_DISPLAY_RESOLUTION"):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def frame(width: int = 1920, height: int = 1080) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 1] = 128
    return image


def import_function() -> types.ModuleType:
    """Import the function as the Greengrass runtime does: executing it runs the loop."""
    spec = importlib.util.spec_from_file_location("deeplens_inference", LAMBDA_DIR / "deeplens_inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["deeplens_inference"] = module
    spec.loader.exec_module(module)
    return module


def run_function(device: Device) -> types.ModuleType:
    """Import the function (which runs its loop) until the camera double stops it."""
    with pytest.raises(device.StopFrames):
        import_function()
    return sys.modules["deeplens_inference"]


def payloads(device: Device) -> list[dict]:
    return [json.loads(payload) for _, payload in device.greengrasssdk.iot.messages]


def test_loop_publishes_detections_and_draws_boxes(device: Device, environment, sleeps) -> None:
    device.awscam.frames = [(True, frame()), (True, frame())]
    device.awscam.results = [
        [
            # letterbox at 512 px: the 1920x1080 frame sits 420 px down a 1920 px square (x3.75)
            {"label": 1, "prob": 0.9, "xmin": 100, "ymin": 200, "xmax": 200, "ymax": 300},
            {"label": 0, "prob": 0.2, "xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10},
        ],
        [],
    ]
    run_function(device)

    assert device.mo.calls == [("deploy_model_algo_1", 512, 512)]
    (model,) = device.awscam.models
    assert model.path == "/opt/awscam/artifacts/mxnet_deploy_model_algo_1_FP16_FUSED.xml"
    assert model.loading_config == {"GPU": 1}
    assert model.inputs == [(512, 512, 3), (512, 512, 3)]
    topics = {topic for topic, _ in device.greengrasssdk.iot.messages}
    assert topics == {TOPIC}
    messages = payloads(device)
    assert [m["status"] for m in messages if "status" in m][:2] == [
        "optimizing model deploy_model_algo_1 at 512px",
        "loading optimized model /opt/awscam/artifacts/mxnet_deploy_model_algo_1_FP16_FUSED.xml",
    ]
    detections = [m for m in messages if "status" not in m]
    assert [{k: v for k, v in m.items() if k != "detections"} for m in detections] == [
        {"yellow_box": 0.9},
        {},
    ]
    assert detections[0]["detections"] == [
        {"label": "yellow_box", "prob": 0.9, "xmin": 375, "ymin": 330, "xmax": 750, "ymax": 705}
    ]  # the box drawn below, in frame pixels
    assert device.cv2.rectangles == [((375, 330), (750, 705))]
    assert device.cv2.texts == [("yellow_box: 90.00%", (375, 315))]
    assert sleeps == []


def test_a_failed_frame_is_published_and_the_loop_goes_on(device: Device, environment, sleeps) -> None:
    device.awscam.frames = [(False, None), (False, None), (True, frame())]
    device.awscam.results = [[{"label": 0, "prob": 0.7, "xmin": 1, "ymin": 1, "xmax": 2, "ymax": 2}]]
    run_function(device)

    messages = payloads(device)
    errors = [m for m in messages if "error" in m]
    assert len(errors) == 2
    assert errors[0]["error"] == "RuntimeError: awscam.getLastFrame() returned no frame"
    assert errors[0]["stage"] == "inference"
    assert errors[0]["where"].startswith("deeplens_inference.py:")
    assert sleeps == [1.0, 2.0]
    assert {k: v for k, v in messages[-1].items() if k != "detections"} == {"blue_box": 0.7}
    assert [d["label"] for d in messages[-1]["detections"]] == ["blue_box"]


def test_model_optimizer_failure_is_published_and_raised(device: Device, environment, sleeps) -> None:
    device.mo.error = 2
    with pytest.raises(RuntimeError, match="returned error 2: the model optimizer failed"):
        import_function()
    last = payloads(device)[-1]
    assert last["stage"] == "model"
    assert "mo.optimize('deploy_model_algo_1', 512, 512) returned error 2" in last["error"]
    assert device.awscam.models == []


def test_bad_configuration_is_published_on_the_device_topic(
    device: Device, environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPLENS_IMAGE_SHAPE", "huge")
    with pytest.raises(ValueError, match="DEEPLENS_IMAGE_SHAPE"):
        import_function()
    ((topic, payload),) = device.greengrasssdk.iot.messages
    assert topic == TOPIC
    assert json.loads(payload)["stage"] == "configuration"
    assert device.mo.calls == []


def test_crop_input(device: Device, environment, monkeypatch: pytest.MonkeyPatch, sleeps) -> None:
    monkeypatch.setenv("DEEPLENS_RESIZE_MODE", "crop")
    monkeypatch.setenv("DEEPLENS_IMAGE_SHAPE", "300")
    device.awscam.frames = [(True, frame(858, 480))]
    device.awscam.results = [[{"label": 0, "prob": 0.8, "xmin": 0, "ymin": 0, "xmax": 300, "ymax": 300}]]
    run_function(device)
    # crop keeps the centred 480x480 square: x from 189 to 669
    assert device.cv2.rectangles == [((189, 0), (669, 479))]
    assert device.awscam.models[0].inputs == [(300, 300, 3)]


def test_model_input_letterbox_pads_with_black(device: Device, environment, sleeps) -> None:
    device.awscam.frames = []
    inference = run_function(device)
    module = importlib.import_module("deeplens_logic")
    image = np.full((100, 200, 3), 255, dtype=np.uint8)
    square = inference.model_input(image, 100, "letterbox")
    assert square.shape == (100, 100, 3)
    assert square[:20, :, :].max() == 0  # padding above the content
    assert square[30:70, :, :].min() > 200  # the content
    assert module.input_region(200, 100, "letterbox").top == 50
    portrait = inference.model_input(np.full((200, 100, 3), 255, dtype=np.uint8), 100, "letterbox")
    assert portrait[:, :20, :].max() == 0  # a reused canvas never leaks the previous frame's content
    again = inference.model_input(image, 100, "letterbox")
    assert again[:20, :, :].max() == 0


def test_function_handler_is_a_no_op(device: Device, environment, sleeps) -> None:
    inference = run_function(device)
    assert inference.function_handler({"any": "event"}, None) is None
