"""SageMaker's hyperparameter strings, typed and checked, with errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REAL_HYPERPARAMS

from ml_tools.hyperparameters import HyperparameterError, load_hyperparameters, parse_hyperparameters


def test_the_real_hyperparams_json_parses() -> None:
    hp = load_hyperparameters(REAL_HYPERPARAMS)
    assert (hp.num_classes, hp.image_shape, hp.base_network, hp.optimizer) == (4, 512, "resnet-50", "sgd")
    assert hp.lr_scheduler_step == (10,) and hp.max_objects == 29 and not hp.early_stopping
    assert hp.unknown == ()


def test_the_seeds_values_parse() -> None:
    hp = parse_hyperparameters(
        {
            "num_classes": "2",
            "num_training_samples": "40",
            "lr_scheduler_step": "5,10,25,40",
            "label_width": "50",
        }
    )
    assert hp.lr_scheduler_step == (5, 10, 25, 40) and hp.max_objects == 9


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"num_classes": "2"}, "num_training_samples"),
        ({"num_classes": "two", "num_training_samples": "1"}, "num_classes"),
        ({"num_classes": "2", "num_training_samples": "1", "optimizer": "lbfgs"}, "optimizer"),
        ({"num_classes": "2", "num_training_samples": "1", "base_network": "vgg-19"}, "base_network"),
        ({"num_classes": "2", "num_training_samples": "1", "lr_scheduler_step": "10,5"}, "lr_scheduler_step"),
        ({"num_classes": "2", "num_training_samples": "1", "learning_rate": "2"}, "learning_rate"),
        ({"num_classes": "2", "num_training_samples": "1", "early_stopping": "maybe"}, "early_stopping"),
        (
            {"num_classes": "2", "num_training_samples": "1", "freeze_layer_pattern": "(("},
            "freeze_layer_pattern",
        ),
    ],
)
def test_bad_values_name_the_hyperparameter(given: dict, key: str) -> None:
    with pytest.raises(HyperparameterError, match=key):
        parse_hyperparameters(given)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "hp.json"
    bad.write_text("{not json")
    with pytest.raises(HyperparameterError, match="hp.json: not valid JSON"):
        load_hyperparameters(bad)
    bad.write_text(json.dumps({"num_classes": "0", "num_training_samples": "3"}))
    with pytest.raises(HyperparameterError, match="hp.json: .*num_classes=0"):
        load_hyperparameters(bad)
