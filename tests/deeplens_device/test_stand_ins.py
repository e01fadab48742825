"""The ``mo`` and ``awscam`` stand-ins: what they accept, refuse and return (AWS DeepLens docs)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("mxnet", reason="the simulated DeepLens runs in the ML tools environment (mxnet)")
import cv2
import mxnet as mx
import numpy as np
import pytest

from deeplens_device import STAND_INS_DIR
from ml_tools.ssd_graph import build_deploy_graph, build_training_graph

SHAPE = 64


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[ModuleType, ModuleType]]:
    """Fresh ``mo`` and ``awscam`` modules, artefacts in ``tmp_path/artifacts``."""
    monkeypatch.syspath_prepend(str(STAND_INS_DIR))
    monkeypatch.setenv("DEEPLENS_AWSCAM_ARTIFACTS", str(tmp_path / "artifacts"))
    for name in ("mo", "awscam", "_deeplens_ir"):
        sys.modules.pop(name, None)
    yield importlib.import_module("mo"), importlib.import_module("awscam")
    for name in ("mo", "awscam", "_deeplens_ir"):
        sys.modules.pop(name, None)


def _save(symbol: mx.sym.Symbol, prefix: Path, with_label: bool = False) -> tuple[dict, dict]:
    """Random weights for ``symbol`` saved as ``prefix``-symbol.json / -0000.params."""
    module = mx.mod.Module(symbol, data_names=("data",), label_names=("label",) if with_label else None)
    module.bind(
        data_shapes=[("data", (1, 3, SHAPE, SHAPE))],
        label_shapes=[("label", (1, 2, 5))] if with_label else None,
        for_training=False,
    )
    mx.random.seed(1)
    module.init_params(initializer=mx.init.Xavier())
    arg, aux = module.get_params()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    mx.model.save_checkpoint(str(prefix), 0, symbol, arg, aux)
    return arg, aux


def _deploy_model(tmp_path: Path, name: str = "deploy_model") -> tuple[dict, dict]:
    return _save(build_deploy_graph("tiny", 2, SHAPE), tmp_path / "artifacts" / name)


def test_optimize_writes_the_device_path_and_loads(stand_ins, tmp_path: Path) -> None:
    mo, awscam = stand_ins
    _deploy_model(tmp_path)
    error, path = mo.optimize("deploy_model", SHAPE, SHAPE)
    assert error == 0
    assert path == str(tmp_path / "artifacts" / "mxnet_deploy_model_FP16_FUSED.xml")
    assert Path(path).with_suffix(".bin").is_file()
    model = awscam.Model(path, {"GPU": 1})
    raw = model.doInference(np.zeros((SHAPE, SHAPE, 3), dtype=np.uint8))
    assert list(raw) == ["detection"] and raw["detection"].ndim == 1


@pytest.mark.parametrize(
    ("args", "aux", "code"),
    [
        ((SHAPE, 1025), None, 2),  # over the 1024 pixels the docs allow
        ((0, SHAPE), None, 2),
        ((SHAPE, SHAPE, "tf"), None, 1),  # MXNet only in the stand-in
        ((SHAPE, SHAPE, "onnx"), None, 1),
        ((SHAPE, SHAPE), {"--bogus": "1"}, 2),
        ((SHAPE, SHAPE), {"--img-format": "YUV"}, 2),
        ((SHAPE, SHAPE), {"--epoch": 3}, 2),  # deploy_model-0003.params does not exist
    ],
)
def test_optimize_refuses(stand_ins, tmp_path: Path, args: tuple, aux: dict | None, code: int) -> None:
    mo, _ = stand_ins
    _deploy_model(tmp_path)
    assert mo.optimize("deploy_model", *args, aux_inputs=aux) == (code, "")


def test_optimize_refuses_missing_files_and_training_graphs(stand_ins, tmp_path: Path, capsys) -> None:
    mo, _ = stand_ins
    assert mo.optimize("absent", SHAPE, SHAPE) == (2, "")
    assert "Specified input model does not exist" in capsys.readouterr().err
    _save(build_training_graph("tiny", 2, SHAPE), tmp_path / "artifacts" / "model", with_label=True)
    assert mo.optimize("model", SHAPE, SHAPE) == (2, "")
    assert "deploy.py" in capsys.readouterr().err


def test_optimize_refuses_wrong_weights(stand_ins, tmp_path: Path) -> None:
    mo, _ = stand_ins
    arg, aux = _deploy_model(tmp_path)
    name = next(n for n in arg if n.endswith("_weight"))
    arg[name] = mx.nd.zeros((1,))
    mx.model.save_checkpoint(
        str(tmp_path / "artifacts" / "deploy_model"), 0, build_deploy_graph("tiny", 2, SHAPE), arg, aux
    )
    assert mo.optimize("deploy_model", SHAPE, SHAPE) == (2, "")


def test_ssd_results_are_model_input_pixels_from_class_zero(stand_ins, tmp_path: Path) -> None:
    """parseResult('ssd') = MXNet's own detection rows, scaled to the input size, best first."""
    mo, awscam = stand_ins
    arg, aux = _deploy_model(tmp_path)
    _, path = mo.optimize("deploy_model", SHAPE, SHAPE, aux_inputs={"--precision": "FP32"})
    model = awscam.Model(path, {"GPU": 0})
    frame = np.random.default_rng(0).integers(0, 255, (SHAPE, SHAPE, 3), dtype=np.uint8)
    parsed = model.parseResult("ssd", model.doInference(frame))["ssd"]
    executor = build_deploy_graph("tiny", 2, SHAPE).simple_bind(
        mx.cpu(), grad_req="null", data=(1, 3, SHAPE, SHAPE)
    )
    executor.copy_params_from(arg, aux)
    executor.arg_dict["data"][:] = frame.transpose(2, 0, 1)[None].astype(np.float32)
    rows = executor.forward()[0].asnumpy()[0]
    rows = rows[rows[:, 0] >= 0]
    rows = rows[np.argsort(-rows[:, 1], kind="stable")]
    assert len(parsed) == len(rows) > 0
    for obj, row in zip(parsed, rows, strict=True):
        assert obj["label"] == int(row[0]) and obj["label"] in (0, 1)
        assert obj["prob"] == pytest.approx(float(row[1]), abs=1e-5)
        assert [obj["xmin"], obj["ymin"], obj["xmax"], obj["ymax"]] == [
            round(float(v) * SHAPE) for v in row[2:]
        ]


def test_rgb_img_format_swaps_channels_and_fp16_rounds(stand_ins, tmp_path: Path) -> None:
    mo, awscam = stand_ins
    _deploy_model(tmp_path)
    _, bgr = mo.optimize("deploy_model", SHAPE, SHAPE, aux_inputs={"--precision": "FP32"})
    _, rgb = mo.optimize(
        "deploy_model", SHAPE, SHAPE, aux_inputs={"--precision": "FP32", "--img-format": "RGB"}
    )
    assert bgr == rgb  # same file name, as on the device: the last optimisation wins
    _, fp16 = mo.optimize("deploy_model", SHAPE, SHAPE)
    frame = np.random.default_rng(1).integers(0, 255, (SHAPE, SHAPE, 3), dtype=np.uint8)
    swapped = awscam.Model(rgb, {"GPU": 1}).doInference(frame)["detection"]
    _, plain = mo.optimize("deploy_model", SHAPE, SHAPE, aux_inputs={"--precision": "FP32"})
    model = awscam.Model(plain, {"GPU": 1})
    np.testing.assert_allclose(
        swapped, model.doInference(np.ascontiguousarray(frame[:, :, ::-1]))["detection"], atol=1e-5
    )
    assert not np.allclose(swapped, model.doInference(frame)["detection"])
    half = awscam.Model(fp16, {"GPU": 1}).doInference(frame)["detection"]
    full = model.doInference(frame)["detection"]
    assert not np.array_equal(half, full)  # weights were rounded to half precision...
    assert np.abs(np.sort(half) - np.sort(full)).max() < 0.05  # ...which barely moves the values


def test_model_refuses_bad_config_and_frames(stand_ins, tmp_path: Path) -> None:
    mo, awscam = stand_ins
    _deploy_model(tmp_path)
    _, path = mo.optimize("deploy_model", SHAPE, SHAPE)
    with pytest.raises(ValueError, match="GPU"):
        awscam.Model(path, {"CPU": 1})
    with pytest.raises(ValueError, match="runtime"):
        awscam.Model(path, {"GPU": 1}, runtime=1)
    with pytest.raises(ValueError, match="not an optimised model"):
        awscam.Model(str(tmp_path / "artifacts" / "deploy_model-symbol.json"), {"GPU": 1})
    model = awscam.Model(path, {"GPU": 1})
    with pytest.raises(ValueError, match=r"\(64, 64, 3\)"):
        model.doInference(np.zeros((1080, 1920, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="model_type"):
        model.parseResult("yolo", {"detection": np.zeros(6)})


def _write_images(folder: Path, count: int) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    frames = []
    for i in range(count):
        frame = np.full((40 + i, 60, 3), (10 * i, 100, 200), dtype=np.uint8)
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), frame)
        frames.append(frame)
    return frames


def test_camera_folder_loops_in_name_order_as_bgr(stand_ins, tmp_path: Path, monkeypatch) -> None:
    _, awscam = stand_ins
    frames = _write_images(tmp_path / "camera", 3)
    monkeypatch.setenv("DEEPLENS_CAMERA_SOURCE", str(tmp_path / "camera"))
    got = [awscam.getLastFrame() for _ in range(4)]
    assert all(ok for ok, _ in got)
    for (_, frame), expected in zip(got, [*frames, frames[0]], strict=True):
        assert frame.dtype == np.uint8 and frame.shape == expected.shape
        np.testing.assert_array_equal(frame, expected)  # PNG: exact, BGR as cv2 reads it
    got[0][1][:] = 0  # the caller draws on its frame: the camera's copy is untouched
    assert awscam.getLastFrame()[1].max() > 0


def test_camera_video_loops(stand_ins, tmp_path: Path, monkeypatch) -> None:
    _, awscam = stand_ins
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 60 * (i + 1), dtype=np.uint8))
    writer.release()
    monkeypatch.setenv("DEEPLENS_CAMERA_SOURCE", str(path))
    levels = [int(awscam.getLastFrame()[1].mean().round(-1)) for _ in range(5)]
    assert levels == [60, 120, 180, 60, 120]


def test_camera_fps_skips_frames_for_a_slow_reader(stand_ins, tmp_path: Path, monkeypatch) -> None:
    _, awscam = stand_ins
    _write_images(tmp_path / "camera", 50)
    monkeypatch.setenv("DEEPLENS_CAMERA_SOURCE", str(tmp_path / "camera"))
    monkeypatch.setenv("DEEPLENS_CAMERA_FPS", "20")
    started = awscam.time.monotonic()
    first = awscam.getLastFrame()[1].shape[0]
    awscam.time.sleep(0.3)  # ~6 frames go by
    second = awscam.getLastFrame()[1].shape[0]
    elapsed = awscam.time.monotonic() - started
    assert 0.3 * 20 - 1 <= second - first <= elapsed * 20 + 1
    third = awscam.getLastFrame()[1].shape[0]  # a fast reader waits for the next frame
    assert third > second  # never the same frame twice


def test_no_camera_source_is_no_frame(stand_ins, monkeypatch) -> None:
    _, awscam = stand_ins
    monkeypatch.delenv("DEEPLENS_CAMERA_SOURCE", raising=False)
    assert awscam.getLastFrame() == (False, None)
