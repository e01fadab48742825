"""The built-in object-detection algorithm's hyperparameters, parsed from SageMaker's string dict."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adadelta")
BASE_NETWORKS = ("vgg-16", "resnet-50")

# The built-in algorithm's hyperparameters with their defaults, as hyperparams.json spells them.
# num_classes and num_training_samples are required (no default).
HYPERPARAMETER_DEFAULTS: dict[str, str] = {
    "_kvstore": "device",
    "_num_kv_servers": "auto",
    "_tuning_objective_metric": "",
    "base_network": "vgg-16",
    "early_stopping": "False",
    "early_stopping_min_epochs": "10",
    "early_stopping_patience": "5",
    "early_stopping_tolerance": "0.0",
    "epochs": "30",
    "freeze_layer_pattern": "",
    "image_shape": "300",
    "kv_store": "device",
    "label_width": "350",
    "learning_rate": "0.001",
    "lr_scheduler_factor": "0.1",
    "lr_scheduler_step": "",
    "mini_batch_size": "32",
    "momentum": "0.9",
    "nms_threshold": "0.45",
    "nms_topk": "400",
    "optimizer": "sgd",
    "overlap_threshold": "0.5",
    "use_pretrained_model": "1",
    "weight_decay": "0.0005",
}
REQUIRED_HYPERPARAMETERS: tuple[str, ...] = ("num_classes", "num_training_samples")


class HyperparameterError(ValueError):
    """A hyperparameter with a value the algorithm refuses; the message names it."""


@dataclass(frozen=True)
class Hyperparameters:
    """Typed view of a training job's hyperparameters (defaults filled in)."""

    raw: dict[str, str]  # every known key, as strings (what hyperparams.json gets)
    unknown: tuple[str, ...]  # keys the algorithm does not know
    num_classes: int
    num_training_samples: int
    base_network: str
    use_pretrained_model: bool
    image_shape: int
    epochs: int
    learning_rate: float
    lr_scheduler_factor: float
    lr_scheduler_step: tuple[int, ...]
    optimizer: str
    momentum: float
    weight_decay: float
    mini_batch_size: int
    label_width: int
    nms_threshold: float
    nms_topk: int
    overlap_threshold: float
    early_stopping: bool
    early_stopping_min_epochs: int
    early_stopping_patience: int
    early_stopping_tolerance: float
    freeze_layer_pattern: str
    kv_store: str

    @property
    def max_objects(self) -> int:
        """Objects per image that label_width leaves room for (2 header values, 5 per object)."""
        return (self.label_width - 2) // 5


def _int(raw: Mapping[str, str], key: str, minimum: int) -> int:
    try:
        value = int(str(raw[key]).strip())
    except ValueError:
        raise HyperparameterError(f"hyperparameter {key}={raw[key]!r} must be an integer") from None
    if value < minimum:
        raise HyperparameterError(f"hyperparameter {key}={value} must be at least {minimum}")
    return value


def _float(raw: Mapping[str, str], key: str, low: float, high: float) -> float:
    try:
        value = float(str(raw[key]).strip())
    except ValueError:
        raise HyperparameterError(f"hyperparameter {key}={raw[key]!r} must be a number") from None
    if not low <= value <= high:
        raise HyperparameterError(f"hyperparameter {key}={value} must be within [{low}, {high}]")
    return value


def _bool(raw: Mapping[str, str], key: str) -> bool:
    value = str(raw[key]).strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise HyperparameterError(f"hyperparameter {key}={raw[key]!r} must be True or False (or 1 or 0)")


def full_hyperparameters(given: Mapping[str, object]) -> dict[str, str]:
    """hyperparams.json's content: the defaults overlaid with the job's known hyperparameters."""
    known = set(HYPERPARAMETER_DEFAULTS) | set(REQUIRED_HYPERPARAMETERS)
    merged = dict(HYPERPARAMETER_DEFAULTS)
    merged.update({k: str(v) for k, v in given.items() if k in known})
    return merged


def parse_hyperparameters(given: Mapping[str, object]) -> Hyperparameters:
    """Validate and type SageMaker's hyperparameter strings; raises HyperparameterError naming the key."""
    missing = [k for k in REQUIRED_HYPERPARAMETERS if k not in given]
    if missing:
        raise HyperparameterError(f"required hyperparameter(s) missing: {', '.join(missing)}")
    raw = full_hyperparameters(given)
    unknown = tuple(sorted(k for k in given if k not in raw))
    base_network = raw["base_network"].strip()
    if base_network not in BASE_NETWORKS:
        raise HyperparameterError(
            f"hyperparameter base_network={base_network!r} must be one of {BASE_NETWORKS}"
        )
    optimizer = raw["optimizer"].strip()
    if optimizer not in OPTIMIZERS:
        raise HyperparameterError(f"hyperparameter optimizer={optimizer!r} must be one of {OPTIMIZERS}")
    steps_text = raw["lr_scheduler_step"].strip()
    try:
        steps = tuple(int(s) for s in re.split(r"\s*,\s*", steps_text) if s) if steps_text else ()
    except ValueError:
        raise HyperparameterError(
            f"hyperparameter lr_scheduler_step={steps_text!r} must be comma-separated epochs, e.g. '10,20'"
        ) from None
    if list(steps) != sorted(set(steps)) or any(s < 1 for s in steps):
        raise HyperparameterError(
            f"hyperparameter lr_scheduler_step={steps_text!r} must be increasing epochs ≥ 1"
        )
    pattern = raw["freeze_layer_pattern"]
    try:
        re.compile(pattern)
    except re.error as exc:
        raise HyperparameterError(
            f"hyperparameter freeze_layer_pattern={pattern!r} is not a regex: {exc}"
        ) from None
    if raw["use_pretrained_model"].strip() not in ("0", "1"):
        raise HyperparameterError(
            f"hyperparameter use_pretrained_model={raw['use_pretrained_model']!r} must be 0 or 1"
        )
    return Hyperparameters(
        raw=raw,
        unknown=unknown,
        num_classes=_int(raw, "num_classes", 1),
        num_training_samples=_int(raw, "num_training_samples", 1),
        base_network=base_network,
        use_pretrained_model=raw["use_pretrained_model"].strip() == "1",
        image_shape=_int(raw, "image_shape", 64),
        epochs=_int(raw, "epochs", 1),
        learning_rate=_float(raw, "learning_rate", 1e-12, 1.0),
        lr_scheduler_factor=_float(raw, "lr_scheduler_factor", 1e-12, 1.0),
        lr_scheduler_step=steps,
        optimizer=optimizer,
        momentum=_float(raw, "momentum", 0.0, 0.999),
        weight_decay=_float(raw, "weight_decay", 0.0, 0.999),
        mini_batch_size=_int(raw, "mini_batch_size", 1),
        label_width=_int(raw, "label_width", 7),
        nms_threshold=_float(raw, "nms_threshold", 0.0, 1.0),
        nms_topk=_int(raw, "nms_topk", 1),
        overlap_threshold=_float(raw, "overlap_threshold", 0.0, 1.0),
        early_stopping=_bool(raw, "early_stopping"),
        early_stopping_min_epochs=_int(raw, "early_stopping_min_epochs", 1),
        early_stopping_patience=_int(raw, "early_stopping_patience", 1),
        early_stopping_tolerance=_float(raw, "early_stopping_tolerance", 0.0, 1.0),
        freeze_layer_pattern=pattern,
        kv_store=raw["kv_store"].strip(),
    )


def load_hyperparameters(path: Path) -> Hyperparameters:
    """Read and parse a hyperparameters JSON file (a dict of strings, as SageMaker writes it)."""
    try:
        given = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HyperparameterError(f"{path}: hyperparameters file not found") from None
    except json.JSONDecodeError as exc:
        raise HyperparameterError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(given, dict):
        raise HyperparameterError(f"{path}: hyperparameters must be a JSON object of strings")
    try:
        return parse_hyperparameters(given)
    except HyperparameterError as exc:
        raise HyperparameterError(f"{path}: {exc}") from None
