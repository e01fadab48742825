"""The emulator's training container, through its command line (as the emulator calls it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import write_hyperparameters

ROOT = Path(__file__).resolve().parents[2]
MAP_LINE = re.compile(
    r"^#quality_metric: host=algo-1, epoch=(\d+), validation mAP <score>=\(([0-9.]+)\)$", re.M
)


def _run(tmp_path: Path, manifests, *extra: str, hp: Path | None = None) -> subprocess.CompletedProcess:
    train, validation, _ = manifests
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}"}
    command = [
        sys.executable, "-m", "ml_tools.train",
        "--train", str(train), "--validation", str(validation), "--label-attribute", "bb",
        "--hyperparameters", str(hp or write_hyperparameters(tmp_path / "hp.json")),
        "--output", str(tmp_path / "out" / "model.tar.gz"), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_fast_mode_builds_the_requested_network_untrained(tmp_path: Path, sample_manifests) -> None:
    result = _run(
        tmp_path,
        sample_manifests,
        "--mode",
        "fast",
        hp=write_hyperparameters(tmp_path / "hp.json", use_pretrained_model="1"),
    )
    assert result.returncode == 0, result.stderr
    log = result.stdout
    assert "Base network: resnet-50" in log
    assert "UNTRAINED" in log
    assert "Hyperparameter not honoured: use_pretrained_model=1" in log
    scores = MAP_LINE.findall(log)
    assert len(scores) == 1 and 0.0 <= float(scores[0][1]) <= 1.0
    with tarfile.open(tmp_path / "out" / "model.tar.gz") as tar:
        names = sorted(tar.getnames())
        assert names == ["hyperparams.json", "model_algo_1-0000.params", "model_algo_1-symbol.json"]
        graph = json.load(tar.extractfile("model_algo_1-symbol.json"))
    assert any(n["name"] == "stage4_unit3_conv3" for n in graph["nodes"])


def test_train_mode_trains_the_tiny_network_and_keeps_the_best_epoch(
    tmp_path: Path, sample_manifests
) -> None:
    hp = write_hyperparameters(tmp_path / "hp.json", epochs="3", colour="blue", learning_rate="0.0005")
    result = _run(tmp_path, sample_manifests, "--mode", "train", "--max-seconds", "6", hp=hp)
    assert result.returncode == 0, result.stderr
    log = result.stdout
    assert "Base network: tiny" in log
    assert "Hyperparameter not honoured: base_network=resnet-50" in log
    assert "Hyperparameter not honoured: hyperparameter colour is not one of the algorithm's" in log
    assert "Hyperparameter not honoured: learning_rate=0.0005" in log
    assert "train cross_entropy <loss>" in log and "train smooth_l1 <loss>" in log
    epochs = MAP_LINE.findall(log)
    assert len(epochs) >= 2 and [int(e) for e, _ in epochs] == list(range(len(epochs)))
    best = max(float(s) for _, s in epochs)
    assert f"#quality_metric: host=algo-1, validation mAP <score>=({best:.4f})" in log
    with tarfile.open(tmp_path / "out" / "model.tar.gz") as tar:
        hyper = json.load(tar.extractfile("hyperparams.json"))
        graph = json.load(tar.extractfile("model_algo_1-symbol.json"))
    assert hyper["base_network"] == "resnet-50" and "colour" not in hyper
    assert any(n["name"] == "tiny_conv1" for n in graph["nodes"])


def test_bad_manifest_line_fails_with_one_clear_line(tmp_path: Path, sample_manifests) -> None:
    train, validation, classes = sample_manifests
    broken = tmp_path / "broken.manifest"
    lines = train.read_text().splitlines()
    lines[2] = lines[2].replace('"class_id": 0', '"class_id": 7').replace('"class_id": 1', '"class_id": 7')
    assert '"class_id": 7' in lines[2], "line 3 of the (seeded) sample has a box"
    broken.write_text("\n".join(lines) + "\n")
    result = _run(tmp_path, (broken, validation, classes), "--mode", "fast", "--backbone", "tiny")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert re.match(r"error: .*broken\.manifest:3: annotation \d class_id 7 is outside 0\.\.1", result.stderr)
    assert not (tmp_path / "out" / "model.tar.gz").exists()


def test_bad_hyperparameter_fails_naming_it(tmp_path: Path, sample_manifests) -> None:
    hp = write_hyperparameters(tmp_path / "hp.json", mini_batch_size="zero")
    result = _run(tmp_path, sample_manifests, "--mode", "fast", hp=hp)
    assert result.returncode == 2
    assert "hp.json: hyperparameter mini_batch_size='zero' must be an integer" in result.stderr


def test_too_many_objects_for_label_width_names_the_line(tmp_path: Path, sample_manifests) -> None:
    hp = write_hyperparameters(tmp_path / "hp.json", label_width="7")  # room for one object
    result = _run(tmp_path, sample_manifests, "--mode", "fast", "--backbone", "tiny", hp=hp)
    assert result.returncode == 2
    assert re.search(r"\.manifest:\d+: \d objects, more than label_width=7 allows", result.stderr)
