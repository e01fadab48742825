"""Watch a DeepLens: its detections on ``$aws/things/<thing>/infer`` and its annotated frames.

    python -m deeplens_pipeline.device_watch --thing deeplens_abc --seconds 30
    python -m deeplens_pipeline.device_watch --thing deeplens_abc --endpoint 127.0.0.1 --port 1883 \\
        --plain --frames-from results.mjpeg --save-frames frames/

Two ways to reach the messages, chosen by ``--plain``:

- default: AWS IoT Core, MQTT over WebSocket signed with SigV4 (the AWS IoT Device SDK's
  ``mqtt_connection_builder.websockets_with_default_aws_signing``) with the default credential
  chain; the endpoint is ``--endpoint`` or ``iot describe-endpoint --endpoint-type iot:Data-ATS``
  (boto3). The credentials need ``iot:Connect``, ``iot:Subscribe`` and ``iot:Receive``.
- ``--plain``: plain MQTT (no TLS, no authentication) to ``--endpoint``:``--port``, the
  emulator's broker (``emulator.mqtt_broker``).

The function's messages (``include/lambda/deeplens_logic.py``) are ``{label: probability}``
(``detections_payload``; no box), ``{"status": ...}`` and ``{"error", "stage", "where"}``; a
message with ``"detections": [{"label", "prob", "xmin", "ymin", "xmax", "ymax"}, ...]`` is shown
with its boxes. ``--frames-from`` reads the function's MJPEG stream (the ``/tmp/results.mjpeg``
FIFO, a copy of it, or ``-`` for standard input, e.g. ``ssh aws_cam@deeplens cat
/tmp/results.mjpeg | ...``) and saves its JPEG frames to a folder (``--save-frames``) or as a
raw MJPEG clip (``--save-clip``; plays with ``ffplay -f mjpeg clip.mjpeg``). At the end: frames
seen, messages, detections per class. No Airflow here.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import stat
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

DEFAULT_PLAIN_PORT = 1883
WEBSOCKET_PORT = 443
JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"
_MAX_BUFFER = 32 * 1024 * 1024


def infer_topic(thing_name: str) -> str:
    """The DeepLens project topic of a device."""
    if not thing_name or any(c in thing_name for c in "/#+"):
        raise ValueError(f"{thing_name!r} is not an IoT thing name")
    return f"$aws/things/{thing_name}/infer"


@dataclass(frozen=True)
class Detection:
    """One detected object as the message carries it (box in frame pixels when present)."""

    label: str
    prob: float
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class DeviceMessage:
    """A parsed message: ``kind`` is detections, status, error or unknown."""

    kind: str
    detections: tuple[Detection, ...] = ()
    text: str = ""


def _box(item: dict[str, Any]) -> tuple[int, int, int, int] | None:
    try:
        return tuple(int(item[k]) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[return-value]
    except (KeyError, TypeError, ValueError):
        return None


def parse_payload(payload: bytes | str) -> DeviceMessage:
    """Parse one message from the inference function."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return DeviceMessage("unknown", text=repr(payload[:200]))
    if not isinstance(body, dict):
        return DeviceMessage("unknown", text=repr(body)[:200])
    if "error" in body:
        where = f" at {body['where']}" if body.get("where") else ""
        return DeviceMessage("error", text=f"[{body.get('stage', '?')}] {body['error']}{where}")
    if "status" in body:
        return DeviceMessage("status", text=str(body["status"]))
    if isinstance(body.get("detections"), list):
        found = [
            Detection(str(item["label"]), float(item.get("prob", item.get("probability", 0.0))), _box(item))
            for item in body["detections"]
            if isinstance(item, dict) and "label" in item
        ]
    else:
        try:
            found = [Detection(str(label), float(prob)) for label, prob in body.items()]
        except (TypeError, ValueError):
            return DeviceMessage("unknown", text=json.dumps(body)[:200])
    found.sort(key=lambda d: -d.prob)
    return DeviceMessage("detections", tuple(found))


class RateMeter:
    """Messages per second over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float) -> float:
        """Count one message at ``now`` (seconds) and return the current rate."""
        self._times.append(now)
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def format_message(message: DeviceMessage, rate: float, now: float | None = None) -> str:
    """One console line for ``message``."""
    clock = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    if message.kind == "detections":
        if not message.detections:
            body = "nothing detected"
        else:
            parts = []
            for d in message.detections:
                box = f" box=({d.box[0]},{d.box[1]})-({d.box[2]},{d.box[3]})" if d.box else ""
                parts.append(f"{d.label} {d.prob * 100:.1f}%{box}")
            body = "; ".join(parts)
        return f"{clock}  {body}  [{rate:.1f} msg/s]"
    if message.kind == "status":
        return f"{clock}  status: {message.text}"
    if message.kind == "error":
        return f"{clock}  ERROR {message.text}"
    return f"{clock}  unrecognised message: {message.text}"


@dataclass
class WatchSummary:
    """What was seen while watching."""

    messages: int = 0
    detection_messages: int = 0
    empty_messages: int = 0
    statuses: int = 0
    errors: int = 0
    frames: int = 0
    per_class: Counter[str] = field(default_factory=Counter)
    best: dict[str, float] = field(default_factory=dict)
    example_frame: str | None = None
    clip: str | None = None

    def add(self, message: DeviceMessage) -> None:
        """Count one message."""
        self.messages += 1
        if message.kind == "detections":
            self.detection_messages += 1
            if not message.detections:
                self.empty_messages += 1
            for d in message.detections:
                self.per_class[d.label] += 1
                self.best[d.label] = max(self.best.get(d.label, 0.0), d.prob)
        elif message.kind == "status":
            self.statuses += 1
        elif message.kind == "error":
            self.errors += 1

    def render(self) -> str:
        """The closing summary."""
        lines = [
            f"frames seen: {self.frames}",
            f"messages: {self.messages} ({self.detection_messages} with detections results, "
            f"{self.empty_messages} empty, {self.statuses} status, {self.errors} errors)",
            "detections per class:" if self.per_class else "detections per class: none",
        ]
        for label, count in sorted(self.per_class.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {label}: {count} (best {self.best[label] * 100:.1f}%)")
        if self.example_frame:
            lines.append(f"annotated frame: {self.example_frame}")
        if self.clip:
            lines.append(f"clip: {self.clip}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "frames": self.frames,
            "messages": self.messages,
            "detection_messages": self.detection_messages,
            "empty_messages": self.empty_messages,
            "statuses": self.statuses,
            "errors": self.errors,
            "detections_per_class": dict(self.per_class),
            "best_probability": self.best,
            "example_frame": self.example_frame,
            "clip": self.clip,
        }


def _jpeg_end(data: bytes | bytearray, start: int) -> int | None:
    """Index just past the JPEG starting at ``start`` (its EOI), or None if not complete yet.

    Walks the marker segments to the start of scan, then the entropy-coded data, where 0xFF is
    followed by 0x00 (a stuffed byte) or a restart marker; any other marker ends the scan.
    """
    at = start + 2
    while True:
        if at + 4 > len(data):
            return None
        if data[at] != 0xFF:
            return None if at >= len(data) else _scan_to_eoi(data, at)
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker == 0xD9:
            return at + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        length = (data[at + 2] << 8) | data[at + 3]
        at += 2 + length
        if marker == 0xDA:
            return _scan_to_eoi(data, at)


def _scan_to_eoi(data: bytes | bytearray, at: int) -> int | None:
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            return None
        following = data[at + 1]
        if following == 0xD9:
            return at + 2
        if following == 0x00 or following == 0xFF or 0xD0 <= following <= 0xD7:
            at += 1
            continue
        if at + 4 > len(data):
            return None
        # another segment between scans (progressive JPEG): skip it and keep scanning
        at += 2 + ((data[at + 2] << 8) | data[at + 3])


class MjpegSplitter:
    """Cuts a byte stream of back-to-back JPEG images (the DeepLens MJPEG output) into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the frames completed by them."""
        self._buffer += chunk
        frames = []
        while True:
            start = self._buffer.find(JPEG_START)
            if start < 0:
                del self._buffer[: max(0, len(self._buffer) - 1)]
                return frames
            end = _jpeg_end(self._buffer, start)
            if end is None:
                if start:
                    del self._buffer[:start]
                if len(self._buffer) > _MAX_BUFFER:
                    self._buffer.clear()
                return frames
            frames.append(bytes(self._buffer[start:end]))
            del self._buffer[:end]


class FrameSink:
    """Saves frames: each as ``frame_NNNNNN.jpg`` in a folder, or appended to a raw MJPEG clip.

    The function's display thread writes the latest annotated frame again and again until the next
    one is ready (as AWS's ``LocalDisplay`` does), so a frame equal to the one before is counted in
    ``repeats``, not as a new frame.
    """

    def __init__(self, frames_dir: Path | None = None, clip: Path | None = None, every: int = 1) -> None:
        if frames_dir and clip:
            raise ValueError("choose either a frames folder or a clip, not both")
        self.frames_dir = frames_dir
        self.clip = clip
        self.every = max(1, every)
        self.count = 0
        self.repeats = 0
        self._previous: bytes | None = None
        self.last_saved: Path | None = None
        self._clip_handle: BinaryIO | None = None
        if frames_dir:
            frames_dir.mkdir(parents=True, exist_ok=True)
        if clip:
            clip.parent.mkdir(parents=True, exist_ok=True)
            self._clip_handle = clip.open("wb")

    def add(self, jpeg: bytes) -> None:
        """Record one frame (a repeat of the previous one is only counted)."""
        if jpeg == self._previous:
            self.repeats += 1
            return
        self._previous = jpeg
        self.count += 1
        if (self.count - 1) % self.every:
            return
        if self.frames_dir:
            self.last_saved = self.frames_dir / f"frame_{self.count:06d}.jpg"
            self.last_saved.write_bytes(jpeg)
        if self._clip_handle:
            self._clip_handle.write(jpeg)
            self.last_saved = self.clip.with_name(self.clip.stem + "-last.jpg")  # type: ignore[union-attr]
            self.last_saved.write_bytes(jpeg)

    def close(self) -> None:
        """Close the clip file."""
        if self._clip_handle:
            self._clip_handle.close()
            self._clip_handle = None


def read_mjpeg(source: str, on_frame: Callable[[bytes], None], stop: threading.Event) -> None:
    """Read frames from ``source`` (a file, a FIFO, or ``-``) until ``stop`` or its end.

    A FIFO is waited on (the function opens it once a reader is there) and read again after a
    writer leaves; a regular file or standard input ends at its end.
    """
    splitter = MjpegSplitter()
    if source == "-":
        descriptor, is_fifo, owned = sys.stdin.fileno(), False, False
    else:
        is_fifo = stat.S_ISFIFO(Path(source).stat().st_mode)
        descriptor, owned = os.open(source, os.O_RDONLY | os.O_NONBLOCK), True
    try:
        while not stop.is_set():
            readable, _, _ = select.select([descriptor], [], [], 0.2)
            if not readable:
                continue
            try:
                chunk = os.read(descriptor, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                if is_fifo:
                    stop.wait(0.1)
                    continue
                return
            for frame in splitter.feed(chunk):
                on_frame(frame)
    finally:
        if owned:
            os.close(descriptor)


def find_endpoint(region: str | None) -> str:
    """The account's AWS IoT data endpoint (``iot:Data-ATS``), through boto3."""
    import boto3

    client = boto3.client("iot", region_name=region)
    return str(client.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])


def connect_plain(host: str, port: int, client_id: str) -> Any:
    """An AWS IoT Device SDK (awscrt) MQTT connection without TLS, for the emulator's broker."""
    from awscrt import io, mqtt

    event_loop = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(event_loop, io.DefaultHostResolver(event_loop))
    connection = mqtt.Connection(
        client=mqtt.Client(bootstrap, None),
        host_name=host,
        port=port,
        client_id=client_id,
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(10)
    return connection


def connect_aws(endpoint: str, region: str, client_id: str) -> Any:
    """An MQTT-over-WebSocket connection to AWS IoT Core, signed with SigV4 (default credentials)."""
    from awscrt import auth
    from awsiot import mqtt_connection_builder

    connection = mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint=endpoint,
        region=region,
        credentials_provider=auth.AwsCredentialsProvider.new_default_chain(),
        client_id=client_id,
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(20)
    return connection


@dataclass
class WatchSettings:
    """What to watch and where to save frames (see the module docstring)."""

    thing: str
    endpoint: str | None = None
    port: int | None = None
    region: str | None = None
    plain: bool = False
    seconds: float | None = None
    frames_from: str | None = None
    save_frames: Path | None = None
    save_clip: Path | None = None
    frame_every: int = 1


def watch(settings: WatchSettings, out: TextIO = sys.stdout) -> WatchSummary:
    """Subscribe, print messages and save frames until ``seconds`` pass (or Ctrl-C); the summary."""
    from awscrt import mqtt

    topic = infer_topic(settings.thing)
    client_id = f"deeplens-watch-{uuid.uuid4().hex[:12]}"
    if settings.plain:
        if not settings.endpoint:
            raise ValueError("--plain needs --endpoint (the emulator broker's host)")
        connection = connect_plain(settings.endpoint, settings.port or DEFAULT_PLAIN_PORT, client_id)
        where = f"mqtt://{settings.endpoint}:{settings.port or DEFAULT_PLAIN_PORT}"
    else:
        region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise ValueError("AWS IoT Core needs a region: --region or AWS_REGION")
        endpoint = settings.endpoint or find_endpoint(region)
        connection = connect_aws(endpoint, region, client_id)
        where = f"wss://{endpoint}:{WEBSOCKET_PORT}/mqtt"
    summary = WatchSummary()
    meter = RateMeter()
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes, **kwargs: Any) -> None:
        message = parse_payload(payload)
        now = time.time()
        with lock:
            summary.add(message)
            print(format_message(message, meter.tick(time.monotonic()), now), file=out, flush=True)

    subscribed, _ = connection.subscribe(topic=topic, qos=mqtt.QoS.AT_MOST_ONCE, callback=on_message)
    subscribed.result(10)
    print(f"watching {topic} on {where}", file=out, flush=True)
    stop = threading.Event()
    sink = FrameSink(settings.save_frames, settings.save_clip, settings.frame_every)
    reader = None
    if settings.frames_from:
        reader = threading.Thread(
            target=read_mjpeg, args=(settings.frames_from, sink.add, stop), name="mjpeg-reader", daemon=True
        )
        reader.start()
    try:
        deadline = time.monotonic() + settings.seconds if settings.seconds else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if reader:
            reader.join(timeout=2)
        sink.close()
        connection.disconnect().result(10)
    summary.frames = sink.count
    summary.example_frame = str(sink.last_saved) if sink.last_saved else None
    summary.clip = str(settings.save_clip) if settings.save_clip else None
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m deeplens_pipeline.device_watch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--thing", required=True, help="the device's IoT thing name (deeplens_<id>)")
    parser.add_argument(
        "--endpoint", help="AWS IoT data endpoint, or the emulator broker's host with --plain"
    )
    parser.add_argument("--port", type=int, help=f"broker port with --plain (default {DEFAULT_PLAIN_PORT})")
    parser.add_argument("--region", help="AWS Region (default: AWS_REGION)")
    parser.add_argument(
        "--plain", "--no-tls", dest="plain", action="store_true", help="plain MQTT to the emulator's broker"
    )
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--frames-from", help="the function's MJPEG stream: a file, a FIFO, or - for stdin")
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--save-frames", type=Path, help="folder to save each frame to as a JPEG")
    frames.add_argument("--save-clip", type=Path, help="file to save the frames to as a raw MJPEG clip")
    parser.add_argument("--frame-every", type=int, default=1, help="save one frame in N (default every one)")
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 unless it could not connect or subscribe."""
    args = build_parser().parse_args(argv)
    if (args.save_frames or args.save_clip) and not args.frames_from:
        build_parser().error("--save-frames/--save-clip need --frames-from")
    settings = WatchSettings(
        thing=args.thing,
        endpoint=args.endpoint,
        port=args.port,
        region=args.region,
        plain=args.plain,
        seconds=args.seconds,
        frames_from=args.frames_from,
        save_frames=args.save_frames,
        save_clip=args.save_clip,
        frame_every=args.frame_every,
    )
    try:
        summary = watch(settings)
    except Exception as exc:
        print(f"device_watch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
