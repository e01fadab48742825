"""The device watch command: the function's payloads, the MJPEG stream, and one run on mosquitto."""

from __future__ import annotations

import importlib.util
import io
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import paho.mqtt.client as mqtt
import pytest
from PIL import Image

from deeplens_pipeline.device_watch import (
    FrameSink,
    MjpegSplitter,
    RateMeter,
    WatchSummary,
    format_message,
    infer_topic,
    parse_payload,
)
from emulator.mqtt_broker import DEFAULT_BINARY, MqttBroker

ROOT = Path(__file__).resolve().parents[2]


def _device_logic() -> ModuleType:
    """The inference function's own payload code (include/lambda/deeplens_logic.py)."""
    spec = importlib.util.spec_from_file_location(
        "deeplens_logic", ROOT / "include" / "lambda" / "deeplens_logic.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


logic = _device_logic()


def _detection(label: str, prob: float) -> object:
    return logic.Detection(label, 0, prob, 10, 20, 110, 220)


def test_the_functions_detection_payload_is_read_best_first() -> None:
    payload = logic.detections_payload([_detection("yellow_box", 0.61), _detection("blue_box", 0.93)])
    message = parse_payload(payload)
    assert message.kind == "detections"
    assert [(d.label, d.prob, d.box) for d in message.detections] == [
        ("blue_box", 0.93, (10, 20, 110, 220)),
        ("yellow_box", 0.61, (10, 20, 110, 220)),
    ]


def test_nothing_detected_status_and_error_payloads() -> None:
    assert parse_payload(logic.detections_payload([])).detections == ()
    status = parse_payload(logic.status_payload("model loaded; detecting blue_box"))
    assert (status.kind, status.text) == ("status", "model loaded; detecting blue_box")
    try:
        raise RuntimeError("awscam.getLastFrame() returned no frame")
    except RuntimeError as exc:
        error = parse_payload(logic.error_payload("inference", exc))
    assert error.kind == "error"
    assert error.text.startswith("[inference] RuntimeError: awscam.getLastFrame() returned no frame at ")
    assert parse_payload(b"\xff not json").kind == "unknown"


def test_a_message_with_boxes_is_shown_with_them() -> None:
    message = parse_payload(
        '{"detections": [{"label": "blue_box", "prob": 0.9, "xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}]}'
    )
    assert message.detections[0].box == (1, 2, 30, 40)
    assert "blue_box 90.0% box=(1,2)-(30,40)  [2.0 msg/s]" in format_message(message, 2.0, now=0)


def test_rate_is_messages_per_second_over_the_window() -> None:
    meter = RateMeter(window=5.0)
    rates = [meter.tick(t * 0.5) for t in range(11)]  # 2 messages a second for 5 s
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(2.0)
    assert meter.tick(100.0) == 0.0  # a long pause empties the window


def test_summary_counts_messages_and_detections_per_class() -> None:
    summary = WatchSummary()
    for payload in (
        logic.detections_payload([_detection("blue_box", 0.9)]),
        logic.detections_payload([_detection("blue_box", 0.7), _detection("red_ball", 0.8)]),
        logic.detections_payload([]),
        logic.status_payload("loading"),
    ):
        summary.add(parse_payload(payload))
    summary.frames = 12
    text = summary.render()
    assert "frames seen: 12" in text
    assert "messages: 4 (3 with detections results, 1 empty, 1 status, 0 errors)" in text
    assert "  blue_box: 2 (best 90.0%)\n  red_ball: 1 (best 80.0%)" in text


def _jpegs(count: int, progressive: bool = False) -> list[bytes]:
    frames = []
    for index in range(count):
        image = Image.new("RGB", (64, 48), (index * 40 % 255, 90, 200))
        for x in range(0, 64, 3):  # texture, so the entropy-coded data holds 0xFF bytes
            image.putpixel((x, (x * 7 + index) % 48), (255, 255, 255))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=95, progressive=progressive)
        frames.append(out.getvalue())
    return frames


@pytest.mark.parametrize("progressive", [False, True])
def test_the_mjpeg_stream_is_cut_into_the_same_jpeg_frames(progressive: bool) -> None:
    frames = _jpegs(5, progressive)
    stream = b"".join(frames)
    splitter = MjpegSplitter()
    found: list[bytes] = []
    rng = random.Random(4)
    at = 0
    while at < len(stream):
        size = rng.randint(1, 700)
        found += splitter.feed(stream[at : at + size])
        at += size
    assert found == frames


def test_frame_sink_saves_jpegs_or_a_clip(tmp_path: Path) -> None:
    frames = _jpegs(3)
    folder = FrameSink(frames_dir=tmp_path / "frames", every=2)
    clip = FrameSink(clip=tmp_path / "clip.mjpeg")
    for frame in frames:
        folder.add(frame)
        clip.add(frame)
    clip.close()
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_000001.jpg", "frame_000003.jpg"]
    assert (tmp_path / "clip.mjpeg").read_bytes() == b"".join(frames)
    assert clip.last_saved and clip.last_saved.read_bytes() == frames[-1]
    with pytest.raises(ValueError):
        infer_topic("a/b")


@pytest.mark.skipif(
    not Path(DEFAULT_BINARY).is_file(), reason=f"{DEFAULT_BINARY} is missing (apt-get install mosquitto)"
)
def test_watch_prints_detections_and_saves_frames_from_the_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "results.mjpeg"
    os.mkfifo(fifo)
    frames = _jpegs(3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")])}
    with MqttBroker() as broker:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "deeplens_pipeline.device_watch", "--thing", "deeplens_sim",
             "--endpoint", broker.host, "--port", str(broker.port), "--plain", "--seconds", "4",
             "--frames-from", str(fifo), "--save-frames", str(tmp_path / "frames")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert watcher.stdout is not None
        first_line = watcher.stdout.readline()
        assert first_line.startswith("watching $aws/things/deeplens_sim/infer on mqtt://127.0.0.1:")

        def write_frames() -> None:  # as the function's LocalDisplay does: one JPEG after the other
            with fifo.open("wb") as writer:
                for frame in frames:
                    writer.write(frame)

        writer_thread = threading.Thread(target=write_frames)
        writer_thread.start()
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        for payload in (
            logic.status_payload("model loaded"),
            logic.detections_payload([_detection("blue_box", 0.91)]),
            logic.detections_payload([_detection("blue_box", 0.88), _detection("yellow_box", 0.7)]),
            logic.detections_payload([_detection("blue_box", 0.9)]).replace("blue", "other"),
        ):
            publisher.publish("$aws/things/deeplens_sim/infer", payload).wait_for_publish(5)
            time.sleep(0.05)
        publisher.publish("$aws/things/another_device/infer", "{}").wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()
        output, errors = watcher.communicate(timeout=30)
        writer_thread.join(5)
    assert watcher.returncode == 0, errors
    assert "status: model loaded" in output
    assert "blue_box 91.0%" in output
    assert "blue_box 88.0% box=(10,20)-(110,220); yellow_box 70.0% box=(10,20)-(110,220)" in output
    assert "frames seen: 3" in output
    assert "messages: 4 (3 with detections results, 0 empty, 1 status, 0 errors)" in output
    assert "  blue_box: 2 (best 91.0%)" in output
    saved = sorted((tmp_path / "frames").iterdir())
    assert [p.read_bytes() for p in saved] == frames
    assert f"annotated frame: {saved[-1]}" in output


def test_the_aws_endpoint_is_the_accounts_ats_data_endpoint() -> None:
    from moto import mock_aws

    from deeplens_pipeline.device_watch import find_endpoint

    with mock_aws():
        endpoint = find_endpoint("eu-west-1")
    assert endpoint.endswith("-ats.iot.eu-west-1.amazonaws.com")


def test_a_repeated_frame_is_not_a_new_frame(tmp_path) -> None:
    """The display rewrites the latest frame until the next is ready: repeats are not frames seen."""
    from deeplens_pipeline.device_watch import FrameSink

    sink = FrameSink(tmp_path / "frames")
    one, two = b"\xff\xd8one\xff\xd9", b"\xff\xd8two\xff\xd9"
    for jpeg in (one, one, two, one):
        sink.add(jpeg)
    assert (sink.count, sink.repeats) == (3, 1)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "frame_000001.jpg",
        "frame_000002.jpg",
        "frame_000003.jpg",
    ]
