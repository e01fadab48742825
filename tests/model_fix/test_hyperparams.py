"""Tests for model_fix.hyperparams: SageMaker's all-strings hyperparams.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_fix.errors import HyperparamsError
from model_fix.hyperparams import hyperparam_float, hyperparam_int, load_hyperparams
from model_fix.limits import MAX_HYPERPARAMS_BYTES, MAX_JSON_DEPTH

from .conftest import EXAMPLE_HYPERPARAMS


def test_reads_the_sagemaker_example() -> None:
    hyperparams = load_hyperparams(EXAMPLE_HYPERPARAMS)
    assert hyperparams["base_network"] == "resnet-50"
    assert hyperparam_int(hyperparams, "num_classes") == 4
    assert hyperparam_int(hyperparams, "image_shape") == 512
    assert hyperparam_float(hyperparams, "nms_threshold") == 0.45
    assert hyperparam_int(hyperparams, "nms_topk") == 400
    assert hyperparam_int(hyperparams, "absent") is None
    assert hyperparam_int({"freeze_layer_pattern": ""}, "freeze_layer_pattern") is None


def test_non_string_values_are_kept_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "hyperparams.json"
    path.write_text('{"num_classes": 3, "flag": true}')
    assert load_hyperparams(path) == {"num_classes": "3", "flag": "true"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"num_classes": "4",\n "epochs": }', r"hyperparams.json: invalid JSON at line 2, column 12"),
        ('["num_classes"]', "expected a JSON object, found list"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hyperparams.json"
    path.write_text(text)
    with pytest.raises(HyperparamsError, match=message):
        load_hyperparams(path)


def test_non_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "hyperparams.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(HyperparamsError, match="not UTF-8"):
        load_hyperparams(path)


def test_bad_numbers_name_the_key() -> None:
    with pytest.raises(HyperparamsError, match=r"h.json: num_classes='four' is not a number"):
        hyperparam_int({"num_classes": "four"}, "num_classes", "h.json")
    with pytest.raises(HyperparamsError, match=r"image_shape='512\.5' is not a whole number"):
        hyperparam_int({"image_shape": "512.5"}, "image_shape")
    assert hyperparam_int({"image_shape": "512.0"}, "image_shape") == 512


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "hyperparams.json"
    with path.open("wb") as stream:
        stream.truncate(MAX_HYPERPARAMS_BYTES + 1)
    with pytest.raises(
        HyperparamsError,
        match=r"hyperparams.json: 1048577 bytes, more than the 1 MiB a hyperparams.json may have",
    ):
        load_hyperparams(path)
    assert EXAMPLE_HYPERPARAMS.stat().st_size * 1000 < MAX_HYPERPARAMS_BYTES


@pytest.mark.parametrize(
    ("depth", "message"),
    [(100_000, "nested too deep to parse"), (MAX_JSON_DEPTH, "nested more than 64 levels")],
)
def test_deeply_nested_values_are_refused(tmp_path: Path, depth: int, message: str) -> None:
    """100,000 levels raised an uncaught RecursionError; the object itself is the first level."""
    path = tmp_path / "hyperparams.json"
    path.write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(HyperparamsError, match=f"hyperparams.json: JSON {message}"):
        load_hyperparams(path)
    path.write_text('{"a": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}")
    assert load_hyperparams(path)["a"].startswith("[[")
