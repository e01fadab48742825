"""Fixtures of the simulated DeepLens's tests: a model the pipeline's own trainer produced and
``model_fix`` repacked, holdout camera frames, the device's ``python3.7``.

The model is trained once per session (``python -m ml_tools.train --mode train --backbone tiny``,
``$DEEPLENS_DEVICE_TRAIN_SECONDS`` seconds, default 60) on the generated sample dataset, then
repacked exactly as the pipeline's RepackModelOperator does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from deeplens_device.launcher import ML_PYTHON, write_device_python
from emulator.sample_dataset import generate_sample_dataset
from ml_tools.sample_manifests import write_sample_manifests
from model_fix import FixOptions, repack_model_archive

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = Path(__file__).resolve().parent / "doubles"
CLASSES = ("blue_box", "yellow_box")
IMAGE_SHAPE = 128
TRAIN_SECONDS = float(os.environ.get("DEEPLENS_DEVICE_TRAIN_SECONDS", "60"))
LAMBDA_ENV = {"MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:1"}


class DeployedModel(NamedTuple):
    """A repacked model archive and what the device needs to know about it."""

    archive: Path
    model_name: str
    image_shape: int
    labels: tuple[str, ...]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> DeployedModel:
    """The trainer's model.tar.gz (tiny network, trained) repacked by model_fix as the pipeline does."""
    root = tmp_path_factory.mktemp("trained")
    dataset = generate_sample_dataset(root / "dataset", n_images=48, seed=11)
    train, validation, classes = write_sample_manifests(dataset, root / "manifests", letterbox=IMAGE_SHAPE)
    assert tuple(classes) == CLASSES
    hyperparameters = {
        "num_classes": str(len(classes)),
        "num_training_samples": str(len(train.read_text().splitlines())),
        "base_network": "resnet-50",
        "image_shape": str(IMAGE_SHAPE),
        "mini_batch_size": "8",
        "epochs": "400",
        "learning_rate": "0.002",
        "optimizer": "rmsprop",
        "label_width": "50",
    }
    (root / "hp.json").write_text(json.dumps(hyperparameters))
    command = [
        sys.executable, "-m", "ml_tools.train", "--mode", "train", "--backbone", "tiny",
        "--train", str(train), "--validation", str(validation), "--label-attribute", "bb",
        "--hyperparameters", str(root / "hp.json"), "--output", str(root / "out" / "model.tar.gz"),
        "--max-seconds", str(TRAIN_SECONDS),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    repacked = repack_model_archive(
        root / "out" / "model.tar.gz",
        root / "deploy-model.tar.gz",
        "model",
        FixOptions(num_classes=len(classes), data_shape=IMAGE_SHAPE),
    )
    return DeployedModel(repacked.archive_path, repacked.deploy_model_name, IMAGE_SHAPE, tuple(classes))


@pytest.fixture(scope="session")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh sample photos (another seed than training's): the camera's frames, with their answer key."""
    return generate_sample_dataset(tmp_path_factory.mktemp("holdout") / "dataset", n_images=10, seed=999)


@pytest.fixture(scope="session")
def device_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated device's ``python3.7``."""
    if not ML_PYTHON.is_file():
        pytest.skip(f"{ML_PYTHON} is missing: build the ML tools environment (make ml-env)")
    return write_device_python(tmp_path_factory.mktemp("device") / "bin")
