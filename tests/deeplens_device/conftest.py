"""Fixtures of the simulated DeepLens's tests: a model the pipeline's own trainer produced and
``model_fix`` repacked, holdout camera frames, the device's ``python3.7``.

The model is the sample model (``emulator.sample_model``: ``ml_tools.train``, tiny network, 120
epochs with a fixed seed on the generated sample dataset; trained once, cached under ``build/``),
repacked exactly as the pipeline's RepackModelOperator does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from deeplens_device.launcher import ML_PYTHON, write_device_python
from emulator.sample_dataset import generate_sample_dataset
from emulator.sample_model import trained_sample_model
from model_fix import FixOptions, repack_model_archive

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = Path(__file__).resolve().parent / "doubles"
CLASSES = ("blue_box", "yellow_box")
IMAGE_SHAPE = 128
LAMBDA_ENV = {"MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:1"}


class DeployedModel(NamedTuple):
    """A repacked model archive and what the device needs to know about it."""

    archive: Path
    model_name: str
    image_shape: int
    labels: tuple[str, ...]


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> DeployedModel:
    """The sample model (the trainer's model.tar.gz, tiny network, trained once and cached by
    ``emulator.sample_model``) repacked by model_fix as the pipeline does."""
    root = tmp_path_factory.mktemp("trained")
    model = trained_sample_model(Path(sys.executable))
    classes = model.classes
    assert tuple(classes) == CLASSES
    repacked = repack_model_archive(
        model.archive,
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
