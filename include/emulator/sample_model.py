"""A model the pipeline's own trainer produced on the sample dataset, for the simulated DeepLens.

The device tests (``tests/deeplens_device``, ML tools environment) and the deploy proof
(``tests/emulator/simulated_deeplens``, Airflow environment) both need a trained detector: the
``tiny`` network, trained by ``ml_tools.train`` (the emulated SageMaker algorithm) for a fixed number
of epochs with a fixed seed, so its quality does not depend on how busy the machine is. It is
trained once and kept under ``build/sample-model/<recipe digest>/``; the digest covers the recipe
and the trainer's sources, so a change to either trains anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.sample_dataset import generate_sample_dataset
from ml_tools.sample_manifests import write_sample_manifests

REPO_ROOT = Path(__file__).resolve().parents[2]
ML_PYTHON = REPO_ROOT / ".venv-ml" / "bin" / "python"
CACHE_ROOT = REPO_ROOT / "build" / "sample-model"
CLASSES = ("blue_box", "yellow_box")
IMAGE_SHAPE = 128
RECIPE = {
    "dataset": {"n_images": 48, "seed": 11},
    "backbone": "tiny",
    "seed": 0,
    "hyperparameters": {
        "base_network": "resnet-50",
        "image_shape": str(IMAGE_SHAPE),
        "mini_batch_size": "8",
        "epochs": "120",
        "learning_rate": "0.002",
        "optimizer": "rmsprop",
        "label_width": "50",
    },
}
"""rmsprop at 0.002 reaches a validation mAP near 0.5 in 120 epochs (sgd stayed below 0.25)."""
DEPLOYABLE_RECIPE = {
    **RECIPE,
    "hyperparameters": {**RECIPE["hyperparameters"], "image_shape": "300", "epochs": "60"},
}
"""The same model at 300 px, the smallest input the DAG's ``image_shape`` Param offers: the model the
retraining loop starts from (``scripts/retraining_loop.py``)."""


@dataclass(frozen=True)
class SampleModel:
    """The trainer's ``model.tar.gz`` (SageMaker's layout) and what it detects."""

    archive: Path
    classes: tuple[str, ...]
    image_shape: int


def recipe_digest(recipe: dict[str, Any] = RECIPE) -> str:
    """Digest of the recipe and of the trainer's sources (``include/ml_tools``)."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for source in sorted((REPO_ROOT / "include" / "ml_tools").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    digest.update((REPO_ROOT / "include" / "emulator" / "sample_dataset.py").read_bytes())
    return digest.hexdigest()[:16]


def trained_sample_model(
    python: Path = ML_PYTHON, cache_root: Path = CACHE_ROOT, recipe: dict[str, Any] = RECIPE
) -> SampleModel:
    """The cached sample model of ``recipe``, trained first (1-2 minutes on two cores) when missing."""
    image_shape = int(recipe["hyperparameters"]["image_shape"])
    folder = cache_root / recipe_digest(recipe)
    archive = folder / "model.tar.gz"
    if archive.is_file():
        return SampleModel(archive, CLASSES, image_shape)
    if not Path(python).exists():
        raise FileNotFoundError(f"{python}: the ML tools environment is missing (make ml-env)")
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root, prefix=".training-") as work_dir:
        work = Path(work_dir)
        dataset = generate_sample_dataset(work / "dataset", **recipe["dataset"])
        train, validation, classes = write_sample_manifests(
            dataset, work / "manifests", letterbox=image_shape
        )
        if tuple(classes) != CLASSES:
            raise RuntimeError(f"the sample dataset's classes changed: {classes}, expected {CLASSES}")
        hyperparameters = {
            **recipe["hyperparameters"],
            "num_classes": str(len(classes)),
            "num_training_samples": str(len(train.read_text().splitlines())),
        }
        (work / "hp.json").write_text(json.dumps(hyperparameters))
        command = [
            str(python), "-m", "ml_tools.train", "--mode", "train", "--backbone", recipe["backbone"],
            "--seed", str(recipe["seed"]), "--train", str(train), "--validation", str(validation),
            "--label-attribute", "bb", "--hyperparameters", str(work / "hp.json"),
            "--output", str(work / "out" / "model.tar.gz"),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"training the sample model failed:\n{result.stderr[-3000:]}")
        staged = work / "final"
        staged.mkdir()
        shutil.move(str(work / "out" / "model.tar.gz"), staged / "model.tar.gz")
        (staged / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
        try:
            staged.rename(folder)
        except OSError:  # another process finished first: keep its copy
            if not archive.is_file():
                raise
    return SampleModel(archive, CLASSES, image_shape)
