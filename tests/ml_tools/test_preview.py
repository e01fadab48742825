"""The local preview: a deploy model (from the model fix) run on images, drawn and timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from conftest import PHOTOS, SMALL_SHAPE, write_hyperparameters
from PIL import Image

from ml_tools.artifact import write_model_archive
from ml_tools.preview import PreviewError, find_deploy_model, preview
from ml_tools.ssd_graph import build_training_graph
from model_fix import FixOptions, fix_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deploy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-class deploy model whose class-1 bias is high everywhere, so it always detects."""
    tmp = tmp_path_factory.mktemp("model")
    symbol = build_training_graph("tiny", 2, SMALL_SHAPE)
    module = mx.mod.Module(symbol, data_names=("data",), label_names=("label",))
    module.bind(
        data_shapes=[("data", (1, 3, SMALL_SHAPE, SMALL_SHAPE))],
        label_shapes=[("label", (1, 1, 5))],
        for_training=False,
    )
    mx.random.seed(0)
    module.init_params(initializer=mx.init.Xavier())
    arg, aux = module.get_params()
    for name in [n for n in arg if n.endswith("_cls_pred_conv_weight")]:
        arg[name] = arg[name] * 0
        bias = np.zeros(arg[name.replace("weight", "bias")].shape, np.float32)
        bias[1::3] = 6.0  # anchor k's classes are k*3 + (background, class 0, class 1)
        arg[name.replace("weight", "bias")] = mx.nd.array(bias)
    hp = json.loads(write_hyperparameters(tmp / "hp.json").read_text())
    archive = write_model_archive(tmp / "model.tar.gz", symbol, arg, aux, hp)
    return fix_model(archive, tmp / "deploy", FixOptions()).symbol_path.parent


def test_preview_draws_boxes_and_writes_a_contact_sheet(tmp_path: Path, deploy_dir: Path) -> None:
    images = [PHOTOS / "blue_box_1_000133.jpg", PHOTOS / "yellow_box_1_000086.jpg"]
    result = preview(deploy_dir, images, tmp_path / "out", classes=["blue_box", "yellow_box"], threshold=0.5)
    assert [p.name for p in result.annotated] == ["blue_box_1_000133.jpg", "yellow_box_1_000086.jpg"]
    for source, drawn in zip(images, result.annotated, strict=True):
        with Image.open(source) as a, Image.open(drawn) as b:
            assert a.size == b.size and b.format == "JPEG"
            diff = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
            assert (diff.max(axis=2) > 60).mean() > 0.001, "boxes and labels are drawn"
    dets = result.detections["blue_box_1_000133.jpg"]
    assert dets and all(d.label == "blue_box" and d.score >= 0.5 for d in dets)
    assert all(0 <= d.box[0] < d.box[2] <= 1920 and 0 <= d.box[1] < d.box[3] <= 1080 for d in dets)
    with Image.open(result.contact_sheet) as sheet:
        assert sheet.format == "PNG" and sheet.width >= 640
    assert result.ms_per_frame >= result.inference_ms_per_frame > 0


def test_threshold_filters_everything_out(tmp_path: Path, deploy_dir: Path) -> None:
    result = preview(deploy_dir, [PHOTOS / "blue_box_1_000133.jpg"], tmp_path, threshold=1.01)
    assert result.detections == {"blue_box_1_000133.jpg": []}


def test_model_lookup_errors(tmp_path: Path, deploy_dir: Path) -> None:
    prefix, shape = find_deploy_model(deploy_dir)
    assert prefix.endswith("deploy_model_algo_1") and shape == SMALL_SHAPE
    assert find_deploy_model(Path(prefix))[0] == prefix
    with pytest.raises(PreviewError, match="expected one deploy_"):
        find_deploy_model(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"), [("{", "invalid JSON"), ('{"image_shape": "big"}', "not a number")]
)
def test_unreadable_hyperparams_name_the_file(
    tmp_path: Path, deploy_dir: Path, text: str, message: str
) -> None:
    for path in deploy_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "hyperparams.json").write_text(text)
    with pytest.raises(PreviewError, match=rf"hyperparams\.json.*{message}"):
        find_deploy_model(tmp_path)


def test_command_line(tmp_path: Path, deploy_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ml_tools.preview", "--model", str(deploy_dir),
         "--images", str(PHOTOS / "yellow_box_1_000086.jpg"), "--out", str(tmp_path),
         "--classes", "blue_box,yellow_box"],
        capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "include")}, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ms per frame" in result.stdout and (tmp_path / "contact_sheet.png").is_file()
    assert (tmp_path / "yellow_box_1_000086.jpg").is_file()
