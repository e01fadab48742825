"""Pure logic of the DeepLens inference function: configuration, box geometry and IoT payloads.

Nothing here imports a device library (``awscam``, ``mo``, ``cv2``, ``greengrasssdk``), so every
function is tested for real off the device. Python 3.7 syntax: the DeepLens runs Python 3.7.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections import namedtuple
from pathlib import Path

MODEL_TYPE = "ssd"
"""The ``awscam`` parser used for SageMaker's built-in object detection (a single shot detector)."""

RESIZE_MODES = ("letterbox", "stretch", "crop")
"""How a camera frame becomes the model's square input.

``letterbox`` pads the frame to a square (centred) before resizing: it matches the pipeline's default
preprocessing, so objects keep the aspect ratio the model was trained on. ``stretch`` squashes the
whole frame (what the AWS DeepLens samples did). ``crop`` keeps the centred square.
"""

DISPLAY_RESOLUTIONS = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (858, 480)}
"""Sizes of the local project stream written to the results FIFO (the AWS samples' values)."""

MAX_INPUT_SIZE = 1024
"""``mo.optimize`` accepts input sizes up to 1024 pixels."""

CONFIG_FILE_ENV = "DEEPLENS_CONFIG_FILE"
DEFAULT_CONFIG_FILE_NAME = "deeplens_config.json"

# Field name (JSON config file key) -> environment variable name. The Airflow side writes the same
# names (deeplens_pipeline.deploy.inference_settings); a test checks that the two agree.
ENVIRONMENT_NAMES = {
    "model_name": "DEEPLENS_MODEL_NAME",
    "image_shape": "DEEPLENS_IMAGE_SHAPE",
    "labels": "DEEPLENS_LABELS",
    "threshold": "DEEPLENS_THRESHOLD",
    "iot_topic": "DEEPLENS_IOT_TOPIC",
    "resize_mode": "DEEPLENS_RESIZE_MODE",
    "results_fifo": "DEEPLENS_RESULTS_FIFO",
    "display_resolution": "DEEPLENS_DISPLAY_RESOLUTION",
}

DEFAULTS = {
    "threshold": 0.5,
    "resize_mode": "letterbox",
    "results_fifo": "/tmp/results.mjpeg",
    "display_resolution": "480p",
}

_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")

InferenceConfig = namedtuple(
    "InferenceConfig",
    [
        "model_name",
        "image_shape",
        "labels",
        "threshold",
        "iot_topic",
        "resize_mode",
        "results_fifo",
        "display_resolution",
    ],
)
"""Validated configuration of the inference loop (see ``load_config``)."""

Detection = namedtuple("Detection", ["label", "class_id", "prob", "xmin", "ymin", "xmax", "ymax"])
"""One detected object, its box in frame pixels (``xmin <= xmax``, ``ymin <= ymax``)."""

Transform = namedtuple("Transform", ["scale_x", "scale_y", "offset_x", "offset_y"])
"""Maps model-input pixels to frame pixels: ``frame_x = model_x * scale_x + offset_x``."""

InputRegion = namedtuple("InputRegion", ["mode", "side", "left", "top"])
"""How to cut or pad a frame into the model's square input.

``letterbox``: paste the frame at (``left``, ``top``) on a ``side`` x ``side`` canvas.
``crop``: take the ``side`` x ``side`` square whose top-left corner is (``left``, ``top``).
``stretch``: use the whole frame (``side``, ``left`` and ``top`` are unused).
"""


class ConfigError(ValueError):
    """The function's configuration is missing or invalid; the message names the setting and its source."""


def default_config_path(module_file):
    """The JSON fallback file: ``$DEEPLENS_CONFIG_FILE`` or ``deeplens_config.json`` beside the function."""
    beside = Path(module_file).resolve().parent / DEFAULT_CONFIG_FILE_NAME
    return os.environ.get(CONFIG_FILE_ENV) or str(beside)


def read_config_file(path):
    """Read the JSON fallback configuration; a missing file is an empty configuration."""
    if not Path(path).exists():
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except ValueError as exc:
        raise ConfigError(f"config file {path}: not valid JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - set(ENVIRONMENT_NAMES))
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {unknown} (known: {sorted(ENVIRONMENT_NAMES)})")
    return values


def load_config(environ, config_file_path):
    """Build the configuration: environment variables first, then the JSON file, then defaults.

    The deployment sets the environment (Greengrass function definition ``Environment.Variables``);
    the file is the fallback for devices reached without Greengrass. Without an explicit topic, the
    topic is ``$aws/things/<AWS_IOT_THING_NAME>/infer`` (Greengrass sets that variable).
    """
    file_values = read_config_file(config_file_path)
    raw = {}
    sources = {}
    for field, env_name in ENVIRONMENT_NAMES.items():
        if environ.get(env_name, "") != "":
            raw[field] = environ[env_name]
            sources[field] = f"environment variable {env_name}"
        elif field in file_values:
            raw[field] = file_values[field]
            sources[field] = f"config file {config_file_path} key '{field}'"
    for field in ("model_name", "image_shape", "labels"):
        if field not in raw:
            raise ConfigError(
                f"missing setting '{field}': set environment variable {ENVIRONMENT_NAMES[field]} "
                f"or key '{field}' in {config_file_path}"
            )
    thing_name = environ.get("AWS_IOT_THING_NAME", "")
    if "iot_topic" not in raw:
        if not thing_name:
            raise ConfigError(
                "missing setting 'iot_topic': set {} (or AWS_IOT_THING_NAME, which Greengrass sets)".format(
                    ENVIRONMENT_NAMES["iot_topic"]
                )
            )
        raw["iot_topic"] = default_topic(thing_name)
        sources["iot_topic"] = "AWS_IOT_THING_NAME"
    return InferenceConfig(
        model_name=_parse_model_name(raw["model_name"], sources["model_name"]),
        image_shape=_parse_image_shape(raw["image_shape"], sources["image_shape"]),
        labels=_parse_labels(raw["labels"], sources["labels"]),
        threshold=_parse_threshold(raw.get("threshold", DEFAULTS["threshold"]), sources.get("threshold")),
        iot_topic=_parse_text(raw["iot_topic"], sources["iot_topic"]),
        resize_mode=_parse_choice(
            raw.get("resize_mode", DEFAULTS["resize_mode"]), RESIZE_MODES, sources.get("resize_mode")
        ),
        results_fifo=_parse_text(
            raw.get("results_fifo", DEFAULTS["results_fifo"]), sources.get("results_fifo")
        ),
        display_resolution=_parse_choice(
            raw.get("display_resolution", DEFAULTS["display_resolution"]),
            tuple(DISPLAY_RESOLUTIONS),
            sources.get("display_resolution"),
        ),
    )


def default_topic(thing_name):
    """The DeepLens project topic of a device: ``$aws/things/<thing>/infer``."""
    return f"$aws/things/{thing_name}/infer"


def _where(source):
    return source or "default"


def _parse_text(value, source):
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_where(source)}: expected a non-empty string, got {value!r}")
    return value.strip()


def _parse_model_name(value, source):
    name = _parse_text(value, source)
    if not _MODEL_NAME_PATTERN.match(name):
        raise ConfigError(
            f"{_where(source)}: model name {name!r} must be a file prefix in /opt/awscam/artifacts "
            "(letters, digits, '_', '.', '-'), e.g. 'deploy_model_algo_1'"
        )
    return name


def _parse_image_shape(value, source):
    if isinstance(value, bool):
        raise ConfigError(f"{_where(source)}: expected an integer image size, got {value!r}")
    try:
        size = int(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{_where(source)}: expected an integer image size, got {value!r}") from exc
    if not 1 <= size <= MAX_INPUT_SIZE:
        raise ConfigError(
            f"{_where(source)}: image size {size} is outside 1..{MAX_INPUT_SIZE} (mo.optimize's limit)"
        )
    return size


def _parse_labels(value, source):
    labels = value
    if isinstance(value, str):
        try:
            labels = json.loads(value)
        except ValueError as exc:
            raise ConfigError(
                f'{_where(source)}: expected a JSON list of class names such as ["bar", "box"], got {value!r}'
            ) from exc
    if not isinstance(labels, list) or not labels:
        raise ConfigError(f"{_where(source)}: expected a non-empty list of class names, got {value!r}")
    for index, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(
                f"{_where(source)}: class name #{index} must be a non-empty string, got {label!r}"
            )
    return tuple(label.strip() for label in labels)


def _parse_threshold(value, source):
    if isinstance(value, bool):
        raise ConfigError(f"{_where(source)}: expected a probability in [0, 1], got {value!r}")
    try:
        threshold = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_where(source)}: expected a probability in [0, 1], got {value!r}") from exc
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{_where(source)}: threshold {threshold} is outside [0, 1]")
    return threshold


def _parse_choice(value, choices, source):
    if value not in choices:
        raise ConfigError(f"{_where(source)}: {value!r} is not one of {list(choices)}")
    return value


def input_region(frame_width, frame_height, mode):
    """Where the model's square input comes from in a ``frame_width`` x ``frame_height`` frame."""
    _check_frame(frame_width, frame_height)
    if mode == "letterbox":
        side = max(frame_width, frame_height)
        return InputRegion(mode, side, (side - frame_width) // 2, (side - frame_height) // 2)
    if mode == "crop":
        side = min(frame_width, frame_height)
        return InputRegion(mode, side, (frame_width - side) // 2, (frame_height - side) // 2)
    if mode == "stretch":
        return InputRegion(mode, 0, 0, 0)
    raise ValueError(f"resize mode {mode!r} is not one of {list(RESIZE_MODES)}")


def model_to_frame(frame_width, frame_height, input_size, mode):
    """The transform from model-input pixels (``input_size`` square) back to frame pixels."""
    if input_size <= 0:
        raise ValueError(f"input size must be positive, got {input_size}")
    region = input_region(frame_width, frame_height, mode)
    if mode == "stretch":
        return Transform(float(frame_width) / input_size, float(frame_height) / input_size, 0.0, 0.0)
    scale = float(region.side) / input_size
    if mode == "letterbox":
        return Transform(scale, scale, -float(region.left), -float(region.top))
    return Transform(scale, scale, float(region.left), float(region.top))


def _check_frame(frame_width, frame_height):
    if frame_width <= 0 or frame_height <= 0:
        raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")


def label_for(class_id, labels):
    """The class name of ``class_id``; ids outside the label list become ``class_<id>``."""
    if 0 <= class_id < len(labels):
        return labels[class_id]
    return f"class_{class_id}"


def detections(parsed_result, labels, threshold, transform, frame_width, frame_height, model_type=MODEL_TYPE):
    """Turn ``model.parseResult(model_type, ...)`` output into detections in frame pixels.

    Keeps objects whose probability is at least ``threshold``, maps class ids to ``labels``, scales
    and clips the boxes to the frame, and sorts by probability (highest first).
    """
    if model_type not in parsed_result:
        raise ValueError(
            f"parseResult output has no {model_type!r} entry (keys: {sorted(map(str, parsed_result))})"
        )
    found = []
    for obj in parsed_result[model_type]:
        prob = float(obj["prob"])
        if prob < threshold:
            continue
        class_id = int(float(obj["label"]))
        xmin, xmax = _scale_span(obj["xmin"], obj["xmax"], transform.scale_x, transform.offset_x, frame_width)
        ymin, ymax = _scale_span(
            obj["ymin"], obj["ymax"], transform.scale_y, transform.offset_y, frame_height
        )
        found.append(Detection(label_for(class_id, labels), class_id, prob, xmin, ymin, xmax, ymax))
    found.sort(key=lambda detection: -detection.prob)
    return found


def _scale_span(low, high, scale, offset, limit):
    a = _clip(round(float(low) * scale + offset), limit)
    b = _clip(round(float(high) * scale + offset), limit)
    return min(a, b), max(a, b)


def _clip(value, limit):
    return max(0, min(limit - 1, value))


def cloud_output(found):
    """The seed's IoT message body: ``{label: probability}``, the best probability per label."""
    output = {}
    for detection in found:
        prob = round(detection.prob, 4)
        if prob > output.get(detection.label, -1.0):
            output[detection.label] = prob
    return output


DETECTIONS_KEY = "detections"
RESERVED_KEYS = (DETECTIONS_KEY, "status", "error", "stage", "where")
"""Keys of the function's messages besides the labels: no class may be named like one of them."""


def detections_payload(found):
    """JSON text of ``cloud_output`` (``{}`` when nothing is detected, as the seed describes), plus,
    when something is, ``"detections"``: every detection with its box in frame pixels, best first
    (``[{"label", "prob", "xmin", "ymin", "xmax", "ymax"}]``), so a watcher can draw or score it."""
    output = cloud_output(found)
    if found:
        output[DETECTIONS_KEY] = [
            {
                "label": d.label,
                "prob": round(d.prob, 4),
                "xmin": d.xmin,
                "ymin": d.ymin,
                "xmax": d.xmax,
                "ymax": d.ymax,
            }
            for d in sorted(found, key=lambda d: -d.prob)
        ]
    return json.dumps(output, sort_keys=True)


def status_payload(message):
    """JSON text of a lifecycle message (``{"status": ...}``)."""
    return json.dumps({"status": message})


def error_payload(stage, exc):
    """JSON text of an error: what failed, the exception, and the line of the function where it happened."""
    payload = {"error": f"{type(exc).__name__}: {exc}", "stage": stage}
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        payload["where"] = f"{Path(last.filename).name}:{last.lineno} in {last.name}"
    return json.dumps(payload, sort_keys=True)


def annotation_text(detection):
    """The caption drawn above a box, e.g. ``bar: 87.50%``."""
    return f"{detection.label}: {detection.prob * 100:.2f}%"


def caption_origin(detection, offset=15):
    """Where the caption starts: ``offset`` pixels above the box, inside the frame."""
    return detection.xmin, max(offset, detection.ymin - offset)


def next_backoff(current, initial=1.0, maximum=30.0):
    """Seconds to wait after another failed frame: doubles from ``initial`` up to ``maximum``."""
    if current <= 0:
        return initial
    return min(maximum, current * 2)
