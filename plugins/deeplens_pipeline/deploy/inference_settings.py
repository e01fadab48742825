"""The inference function's settings, as the environment variables the deployment gives it.

The device side reads the same names (``include/lambda/deeplens_logic.py``); a test checks that
what this module writes is what the function reads, so no code is edited per project.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ENVIRONMENT_NAMES: dict[str, str] = {
    "model_name": "DEEPLENS_MODEL_NAME",
    "image_shape": "DEEPLENS_IMAGE_SHAPE",
    "labels": "DEEPLENS_LABELS",
    "threshold": "DEEPLENS_THRESHOLD",
    "iot_topic": "DEEPLENS_IOT_TOPIC",
    "resize_mode": "DEEPLENS_RESIZE_MODE",
}
RESIZE_MODES = ("letterbox", "stretch", "crop")
MAX_INPUT_SIZE = 1024  # mo.optimize's limit
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


def infer_topic(thing_name: str) -> str:
    """The DeepLens project topic of a device: ``$aws/things/<thing>/infer``."""
    return f"$aws/things/{check_thing_name(thing_name)}/infer"


def check_thing_name(thing_name: str) -> str:
    """Return ``thing_name`` if it is a valid IoT thing name, else raise ValueError naming it."""
    if not isinstance(thing_name, str) or not _THING_NAME.match(thing_name):
        raise ValueError(
            f"thing_name {thing_name!r} is not an IoT thing name (1-128 of letters, digits, ':', '_', '-'); "
            "a DeepLens is registered as 'deeplens_<id>'"
        )
    return thing_name


def parse_labels(value: Sequence[str] | str) -> tuple[str, ...]:
    """Class names from a list, or a rendered template: JSON list, Python list or comma-separated text."""
    items: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                try:  # a Jinja-rendered Python list: "['bar', 'box']"
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError) as exc:
                    raise ValueError(f"labels {value!r} is not a valid JSON or Python list") from exc
        else:
            items = [part for part in text.split(",") if part.strip()]
    if not isinstance(items, list | tuple) or not items:
        raise ValueError(f"labels must be a non-empty list of class names, got {value!r}")
    labels = []
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"labels[{index}] must be a non-empty class name, got {item!r}")
        labels.append(item.strip())
    return tuple(labels)


def parse_image_shape(value: int | str) -> int:
    """The model's square input size from an int or a templated text; 1..1024 (mo.optimize)."""
    if isinstance(value, bool):
        raise ValueError(f"image_shape must be an integer, got {value!r}")
    try:
        size = int(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"image_shape must be an integer, got {value!r}") from exc
    if not 1 <= size <= MAX_INPUT_SIZE:
        raise ValueError(f"image_shape {size} is outside 1..{MAX_INPUT_SIZE} (mo.optimize's limit)")
    return size


def parse_threshold(value: float | str) -> float:
    """Detection threshold from a number or a templated text, within [0, 1]."""
    if isinstance(value, bool):
        raise ValueError(f"threshold must be a probability in [0, 1], got {value!r}")
    try:
        threshold = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a probability in [0, 1], got {value!r}") from exc
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is outside [0, 1]")
    return threshold


@dataclass(frozen=True)
class InferenceSettings:
    """What the inference function needs to know about the model and the device.

    ``model_name`` is the prefix of the deploy artefacts in ``/opt/awscam/artifacts``
    (``deploy_<prefix>`` after the model repack), ``labels`` the class names in class-id order.
    Without ``thing_name`` the device derives its topic from ``AWS_IOT_THING_NAME``.
    """

    model_name: str
    labels: tuple[str, ...]
    image_shape: int
    threshold: float = 0.5
    thing_name: str | None = None
    resize_mode: str = "letterbox"

    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str) or not _MODEL_NAME.match(self.model_name):
            raise ValueError(
                f"model_name {self.model_name!r} must be a file prefix in /opt/awscam/artifacts "
                "(letters, digits, '_', '.', '-'), e.g. 'deploy_model_algo_1'"
            )
        object.__setattr__(self, "labels", parse_labels(self.labels))
        object.__setattr__(self, "image_shape", parse_image_shape(self.image_shape))
        object.__setattr__(self, "threshold", parse_threshold(self.threshold))
        if self.thing_name is not None:
            check_thing_name(self.thing_name)
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {self.resize_mode!r} is not one of {list(RESIZE_MODES)}")

    @classmethod
    def from_values(
        cls,
        *,
        model_name: str,
        labels: Sequence[str] | str,
        image_shape: int | str,
        threshold: float | str = 0.5,
        thing_name: str | None = None,
        resize_mode: str = "letterbox",
    ) -> InferenceSettings:
        """Build from operator arguments, which may be rendered templates (texts)."""
        return cls(
            model_name=str(model_name).strip(),
            labels=parse_labels(labels),
            image_shape=parse_image_shape(image_shape),
            threshold=parse_threshold(threshold),
            thing_name=thing_name or None,
            resize_mode=resize_mode,
        )

    @property
    def iot_topic(self) -> str | None:
        """The topic the function publishes on, when the thing is known here."""
        return infer_topic(self.thing_name) if self.thing_name else None

    def environment(self) -> dict[str, str]:
        """Environment variables for the function (Lambda, Greengrass function definition, component)."""
        env = {
            ENVIRONMENT_NAMES["model_name"]: self.model_name,
            ENVIRONMENT_NAMES["image_shape"]: str(self.image_shape),
            ENVIRONMENT_NAMES["labels"]: json.dumps(list(self.labels), separators=(",", ":")),
            ENVIRONMENT_NAMES["threshold"]: repr(self.threshold),
            ENVIRONMENT_NAMES["resize_mode"]: self.resize_mode,
        }
        if self.iot_topic:
            env[ENVIRONMENT_NAMES["iot_topic"]] = self.iot_topic
        return env

    def config_file(self) -> dict[str, Any]:
        """The same settings as the function's JSON fallback file (``deeplens_config.json``)."""
        config: dict[str, Any] = {
            "model_name": self.model_name,
            "image_shape": self.image_shape,
            "labels": list(self.labels),
            "threshold": self.threshold,
            "resize_mode": self.resize_mode,
        }
        if self.iot_topic:
            config["iot_topic"] = self.iot_topic
        return config
