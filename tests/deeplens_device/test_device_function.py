"""The unmodified inference function on the simulated DeepLens, with a model the pipeline produced.

The model: the pipeline's trainer (tiny network, trained for about a minute) repacked by
``model_fix``; the camera: fresh sample photos (not trained on); the publisher: the test-only
``greengrasssdk`` double (``doubles/``), which the integration replaces with Greengrass IPC + MQTT.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("mxnet", reason="the simulated DeepLens runs in the ML tools environment (mxnet)")
import cv2
import numpy as np
import pytest
from conftest import DOUBLES, LAMBDA_ENV

from deeplens_device import STAND_INS_DIR
from deeplens_device.simulated import (
    ENVIRONMENT_NAMES,
    FUNCTION_DIR,
    function_environment,
    install_model,
    start_function,
)
from ml_tools.evaluate import iou

THRESHOLD = 0.3
BOX_COLOUR = np.array([255, 165, 20])  # BGR, the function's
FUNCTION_MODULES = ("deeplens_inference", "deeplens_display", "deeplens_iot", "deeplens_logic")


def _answer_key(holdout: Path) -> list[tuple[str, list[dict]]]:
    key = json.loads((holdout / "answer_key.json").read_text())
    return sorted((name, entry["objects"]) for name, entry in key["images"].items())


def _read_fifo(path: Path, distinct: list[bytes], stop: threading.Event) -> None:
    """Read the MJPEG FIFO until ``stop``, keeping each distinct JPEG once (the display repeats them)."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.05)
    buffer, seen = b"", set()
    with open(path, "rb") as fifo:
        while not stop.is_set():
            chunk = fifo.read(65536)
            if not chunk:
                return
            buffer += chunk
            start = buffer.find(b"\xff\xd8")
            while start >= 0:
                end = buffer.find(b"\xff\xd9", start)
                if end < 0:
                    break
                jpeg = buffer[start : end + 2]
                if jpeg not in seen and len(distinct) < 200:
                    seen.add(jpeg)
                    distinct.append(jpeg)
                buffer = buffer[end + 2 :]
                start = buffer.find(b"\xff\xd8")


def test_setting_names_match_the_function() -> None:
    sys.path.insert(0, str(FUNCTION_DIR))
    try:
        logic = importlib.import_module("deeplens_logic")
        assert logic.ENVIRONMENT_NAMES == ENVIRONMENT_NAMES
    finally:
        sys.path.remove(str(FUNCTION_DIR))
        sys.modules.pop("deeplens_logic", None)


def test_function_process_publishes_labels_and_streams_annotated_frames(
    trained_model, holdout: Path, device_python: Path, tmp_path: Path
) -> None:
    """``python3.7 deeplens_inference.py`` on the device: statuses, then one message per frame."""
    artifacts = tmp_path / "opt" / "awscam" / "artifacts"
    assert "deploy_model-symbol.json" in install_model(trained_model.archive, artifacts)
    published, fifo = tmp_path / "published.jsonl", tmp_path / "results.mjpeg"
    env = function_environment(
        model_name=trained_model.model_name,
        image_shape=trained_model.image_shape,
        labels=trained_model.labels,
        thing_name="deeplens-simulated",
        camera_source=holdout / "images",
        artifacts_dir=artifacts,
        results_fifo=fifo,
        threshold=THRESHOLD,
        base={**os.environ, **LAMBDA_ENV, "GREENGRASSSDK_DOUBLE_LOG": str(published)},
    )
    frames = _answer_key(holdout)
    jpegs: list[bytes] = []
    stop = threading.Event()
    reader = threading.Thread(target=_read_fifo, args=(fifo, jpegs, stop), daemon=True)
    reader.start()
    process = start_function(device_python, env, extra_path=[DOUBLES], log_path=tmp_path / "function.log")
    try:
        deadline = time.monotonic() + 90
        messages: list[dict] = []
        while time.monotonic() < deadline and len(messages) < 3 + 2 * len(frames):
            assert process.poll() is None, (tmp_path / "function.log").read_text()[-3000:]
            time.sleep(0.2)
            if published.exists():
                messages = [json.loads(line) for line in published.read_text().splitlines()]
    finally:
        process.terminate()
        process.wait(timeout=10)
        stop.set()
    assert {m["topic"] for m in messages} == {"$aws/things/deeplens-simulated/infer"}
    payloads = [json.loads(m["payload"]) for m in messages]
    assert payloads[0]["status"].startswith("optimizing model deploy_model at 128px")
    assert payloads[1]["status"].endswith("/mxnet_deploy_model_FP16_FUSED.xml")
    assert payloads[2]["status"] == "model loaded; detecting blue_box, yellow_box"
    detections = payloads[3:]
    assert len(detections) >= 2 * len(frames), payloads
    assert not [p for p in detections if "error" in p]
    # the camera serves the holdout images in name order, looping: message k is image k mod n
    with_blue = [
        k for k in range(len(detections)) if any(o["label"] == "blue_box" for o in frames[k % len(frames)][1])
    ]
    blue_found = [k for k in with_blue if "blue_box" in detections[k]]
    assert len(blue_found) >= 0.6 * len(with_blue), (with_blue, detections)
    without_blue = [k for k in range(len(detections)) if k not in with_blue]
    assert sum("blue_box" in detections[k] for k in without_blue) <= len(without_blue) // 2
    assert len(jpegs) >= len(frames)  # the blank start frame, then annotated frames
    image = cv2.imdecode(np.frombuffer(jpegs[-1], dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 858, 3)  # the 480p project stream
    annotated = [cv2.imdecode(np.frombuffer(j, dtype=np.uint8), cv2.IMREAD_COLOR) for j in jpegs[1:]]
    boxes_drawn = [int((np.abs(a.astype(int) - BOX_COLOUR).max(axis=2) < 40).sum()) for a in annotated]
    assert max(boxes_drawn) > 500, boxes_drawn  # box outlines in the function's colour


class _StopCamera(BaseException):
    """Ends the function's endless loop after the holdout frames (not an Exception: it is not caught)."""


def test_boxes_match_the_answer_key(
    trained_model, holdout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function's own detections (frame pixels), recorded in-process: IoU >= 0.5, right label."""
    artifacts = tmp_path / "artifacts"
    install_model(trained_model.archive, artifacts)
    env = function_environment(
        model_name=trained_model.model_name,
        image_shape=trained_model.image_shape,
        labels=trained_model.labels,
        thing_name="deeplens-simulated",
        camera_source=holdout / "images",
        artifacts_dir=artifacts,
        results_fifo=tmp_path / "results.mjpeg",
        threshold=THRESHOLD,
        base={**LAMBDA_ENV, "GREENGRASSSDK_DOUBLE_LOG": str(tmp_path / "published.jsonl")},
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for path in (FUNCTION_DIR, DOUBLES, STAND_INS_DIR):
        monkeypatch.syspath_prepend(str(path))
    names = (*FUNCTION_MODULES, "awscam", "mo", "_deeplens_ir", "greengrasssdk")
    for name in names:
        sys.modules.pop(name, None)
    frames = _answer_key(holdout)
    awscam, logic = importlib.import_module("awscam"), importlib.import_module("deeplens_logic")
    served, found = [], []
    camera, detections = awscam.getLastFrame, logic.detections

    def last_frame():
        if len(served) == len(frames):
            raise _StopCamera
        served.append(1)
        return camera()

    def recording(*args, **kwargs):
        found.append(detections(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(awscam, "getLastFrame", last_frame)
    monkeypatch.setattr(logic, "detections", recording)
    try:
        with pytest.raises(_StopCamera):
            importlib.import_module("deeplens_inference")
    finally:
        for name in names:
            sys.modules.pop(name, None)
    assert len(found) == len(frames)
    matched = total = 0
    for (_, objects), detected in zip(frames, found, strict=True):
        for obj in objects:
            total += 1
            truth = np.array(
                [obj["left"], obj["top"], obj["left"] + obj["width"], obj["top"] + obj["height"]]
            )
            same = [d for d in detected if d.label == obj["label"]]
            boxes = np.array([[d.xmin, d.ymin, d.xmax, d.ymax] for d in same], dtype=float).reshape(-1, 4)
            matched += bool(len(same)) and float(iou(truth.astype(float), boxes).max()) >= 0.5
    assert total >= 10
    assert matched > total / 2, f"{matched} of {total} objects found with IoU >= 0.5 and the right label"
