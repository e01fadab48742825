"""SageMaker's ``hyperparams.json``: every value is a string (``{"num_classes": "4", ...}``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from model_fix.errors import HyperparamsError
from model_fix.limits import MAX_HYPERPARAMS_BYTES, loads_bounded_json, read_capped_text

HYPERPARAMS_FILE = "hyperparams.json"


def load_hyperparams(path: str | Path) -> dict[str, str]:
    """Read hyperparams.json into a dict of strings; raise :class:`HyperparamsError` naming the file.

    Over :data:`~model_fix.limits.MAX_HYPERPARAMS_BYTES`, or nested deeper than
    :data:`~model_fix.limits.MAX_JSON_DEPTH`, is refused too.
    """
    path = Path(path)
    text = read_capped_text(path, MAX_HYPERPARAMS_BYTES, "hyperparams.json", HyperparamsError)
    data = loads_bounded_json(text, str(path), HyperparamsError)
    if not isinstance(data, dict):
        raise HyperparamsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}


def _number(
    hyperparams: Mapping[str, str], key: str, source: str, kind: type[int] | type[float]
) -> float | int | None:
    raw = hyperparams.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise HyperparamsError(f"{source}: {key}={raw!r} is not a number") from exc
    if kind is int:
        if not value.is_integer():
            raise HyperparamsError(f"{source}: {key}={raw!r} is not a whole number")
        return int(value)
    return value


def hyperparam_int(hyperparams: Mapping[str, str], key: str, source: str = HYPERPARAMS_FILE) -> int | None:
    """An integer hyperparameter (``"512"``), or None when absent or empty."""
    value = _number(hyperparams, key, source, int)
    return None if value is None else int(value)


def hyperparam_float(
    hyperparams: Mapping[str, str], key: str, source: str = HYPERPARAMS_FILE
) -> float | None:
    """A float hyperparameter (``"0.45"``), or None when absent or empty."""
    value = _number(hyperparams, key, source, float)
    return None if value is None else float(value)
