"""Incremental training in the emulator's training container: ``--model`` (SageMaker's ``model``
channel) seeds the job with the given model's weights, and is refused when its base_network or
num_classes differ from the job's, or when its weights do not fit the network built."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from conftest import write_hyperparameters

from ml_tools.artifact import read_model_archive
from ml_tools.hyperparameters import load_hyperparameters
from ml_tools.ssd_graph import build_training_graph
from ml_tools.training_run import ModelChannelError, bind_module, load_seed_model, seed_module

ROOT = Path(__file__).resolve().parents[2]
MAP_LINE = re.compile(r"^#quality_metric: host=algo-1, epoch=0, validation mAP <score>=\(([0-9.]+)\)$", re.M)
BEFORE = re.compile(r"Model channel's model before training: validation mAP ([0-9.]+)")


def _run(tmp_path: Path, manifests, out: Path, *extra: str, hp: Path) -> subprocess.CompletedProcess:
    train, validation, _ = manifests
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}"}
    command = [
        sys.executable, "-m", "ml_tools.train",
        "--train", str(train), "--validation", str(validation), "--label-attribute", "bb",
        "--hyperparameters", str(hp), "--output", str(out), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory: pytest.TempPathFactory, sample_manifests) -> tuple[Path, float]:
    """A model.tar.gz trained a little (tiny network, train mode) and its validation mAP."""
    tmp = tmp_path_factory.mktemp("seed")
    hp = write_hyperparameters(tmp / "hp.json", epochs="2")
    out = tmp / "seed" / "model.tar.gz"
    result = _run(
        tmp, sample_manifests, out, "--mode", "train", "--backbone", "tiny", "--max-seconds", "8", hp=hp
    )
    assert result.returncode == 0, result.stderr
    best = re.search(r"#quality_metric: host=algo-1, validation mAP <score>=\(([0-9.]+)\)", result.stdout)
    return out, float(best.group(1))


def _params(path: Path) -> dict[str, np.ndarray]:
    _, arg, aux, _ = read_model_archive(path)
    return {
        **{f"arg:{k}": v.asnumpy() for k, v in arg.items()},
        **{f"aux:{k}": v.asnumpy() for k, v in aux.items()},
    }


def test_fast_mode_with_a_model_keeps_its_weights_and_score(
    tmp_path: Path, sample_manifests, seed_model
) -> None:
    model, _ = seed_model
    hp = write_hyperparameters(tmp_path / "hp.json")
    out = tmp_path / "out" / "model.tar.gz"
    seeded = _run(
        tmp_path, sample_manifests, out, "--mode", "fast", "--backbone", "tiny", "--model", str(model), hp=hp
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "Incremental training: starting from the model channel's model.tar.gz" in seeded.stdout
    assert "UNTRAINED" not in seeded.stdout
    # The model channel, not ImageNet, seeds it: no note about missing pretrained weights.
    assert "Hyperparameter not honoured: use_pretrained_model" not in seeded.stdout
    given, written = _params(model), _params(out)
    assert given.keys() == written.keys()
    assert all(np.array_equal(given[k], written[k]) for k in given)
    # The same weights on the same validation set score the same; untrained weights score otherwise.
    untrained = _run(
        tmp_path,
        sample_manifests,
        tmp_path / "u" / "model.tar.gz",
        "--mode",
        "fast",
        "--backbone",
        "tiny",
        hp=hp,
    )
    assert untrained.returncode == 0, untrained.stderr
    assert not all(np.array_equal(given[k], v) for k, v in _params(tmp_path / "u" / "model.tar.gz").items())


def test_train_mode_starts_from_the_given_weights(tmp_path: Path, sample_manifests, seed_model) -> None:
    model, _ = seed_model
    hp = write_hyperparameters(tmp_path / "hp.json", epochs="1")
    fast = _run(
        tmp_path,
        sample_manifests,
        tmp_path / "f" / "model.tar.gz",
        "--mode",
        "fast",
        "--backbone",
        "tiny",
        "--model",
        str(model),
        hp=hp,
    )
    given_score = float(MAP_LINE.search(fast.stdout).group(1))
    result = _run(
        tmp_path, sample_manifests, tmp_path / "t" / "model.tar.gz",
        "--mode", "train", "--backbone", "tiny", "--max-seconds", "30", "--model", str(model), hp=hp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    before = BEFORE.search(result.stdout)
    assert before, result.stdout
    assert float(before.group(1)) == pytest.approx(given_score, abs=1e-4)
    assert "the tiny network fine-tunes the model channel's weights" in result.stdout
    assert "runs up to 200" not in result.stdout  # a warm start does not restart the from-scratch recipe


def test_seeded_module_holds_the_given_weights_before_the_first_update(
    sample_manifests, seed_model, tmp_path
) -> None:
    model, _ = seed_model
    hp = load_hyperparameters(write_hyperparameters(tmp_path / "hp.json"))
    symbol = build_training_graph(
        "tiny", hp.num_classes, hp.image_shape, hp.nms_threshold, False, hp.nms_topk
    )
    module = bind_module(symbol, 4, hp.image_shape, 3, for_training=True)
    arg, aux = load_seed_model(model, hp)
    before = {k: v.asnumpy().copy() for k, v in module.get_params()[0].items()}
    seed_module(module, arg, aux)
    after = module.get_params()[0]
    assert all(np.array_equal(after[k].asnumpy(), arg[k].asnumpy()) for k in arg)
    assert any(not np.array_equal(before[k], arg[k].asnumpy()) for k in arg)  # it was not already so
    module.forward(
        mx.io.DataBatch([mx.nd.zeros((4, 3, hp.image_shape, hp.image_shape))], [mx.nd.zeros((4, 3, 5))]),
        is_train=False,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"num_classes": "3"},
            "the same num_classes as the model in the model channel: "
            "the model has num_classes=2, this job num_classes=3",
        ),
        (
            {"base_network": "vgg-16"},
            "the same base_network as the model in the model channel: "
            "the model has base_network=resnet-50, this job base_network=vgg-16",
        ),
    ],
)
def test_a_model_of_another_architecture_is_refused(
    tmp_path: Path, sample_manifests, seed_model, override, message
) -> None:
    model, _ = seed_model
    hp = write_hyperparameters(tmp_path / "hp.json", **override)
    result = _run(
        tmp_path,
        sample_manifests,
        tmp_path / "o" / "model.tar.gz",
        "--mode",
        "fast",
        "--backbone",
        "tiny",
        "--model",
        str(model),
        hp=hp,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "o" / "model.tar.gz").exists()


def test_weights_that_do_not_fit_the_network_are_refused(tmp_path: Path, seed_model) -> None:
    model, _ = seed_model
    hp = load_hyperparameters(write_hyperparameters(tmp_path / "hp.json"))
    symbol = build_training_graph(
        "resnet-50", hp.num_classes, hp.image_shape, hp.nms_threshold, False, hp.nms_topk
    )
    module = bind_module(symbol, 1, hp.image_shape, 3, for_training=False)
    with pytest.raises(ModelChannelError, match="do not fit this job's network"):
        seed_module(module, *load_seed_model(model, hp))


def test_a_file_that_is_no_model_archive_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(b"not a tar")
    hp = load_hyperparameters(write_hyperparameters(tmp_path / "hp.json"))
    with pytest.raises(ModelChannelError, match="not a model.tar.gz output by SageMaker"):
        load_seed_model(bogus, hp)
