"""Shared fixtures for the ML tools environment's tests: a small sample dataset and its manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.sample_dataset import generate_sample_dataset
from ml_tools.sample_manifests import write_sample_manifests

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL_TRAINING_GRAPH = FIXTURES / "sagemaker-model" / "model_algo_1-symbol.json"
REAL_HYPERPARAMS = FIXTURES / "sagemaker-model" / "hyperparams.example.json"
GROUNDTRUTH = FIXTURES / "groundtruth"
PHOTOS = FIXTURES / "photos"
SMALL_SHAPE = 128


@pytest.fixture(scope="session")
def sample_manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(train manifest, validation manifest, classes): 16 sample images letterboxed to 128 px."""
    root = tmp_path_factory.mktemp("sample")
    dataset = generate_sample_dataset(root / "dataset", n_images=16, seed=5)
    return write_sample_manifests(dataset, root / "manifests", attribute="bb", letterbox=SMALL_SHAPE)


def write_hyperparameters(path: Path, **overrides: str) -> Path:
    """A hyperparameters JSON for a tiny fast job (strings, as SageMaker passes them)."""
    values = {
        "num_classes": "2",
        "num_training_samples": "13",
        "base_network": "resnet-50",
        "image_shape": str(SMALL_SHAPE),
        "mini_batch_size": "4",
        "epochs": "2",
        "label_width": "50",
    }
    values.update(overrides)
    path.write_text(json.dumps(values))
    return path
