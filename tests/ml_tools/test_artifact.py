"""model.tar.gz laid out exactly as SageMaker's built-in object detection writes it."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import mxnet as mx
import pytest
from conftest import REAL_HYPERPARAMS

from ml_tools.artifact import full_hyperparameters, read_model_archive, write_model_archive
from ml_tools.ssd_graph import build_training_graph


def _initial(symbol: mx.sym.Symbol) -> tuple[dict, dict]:
    module = mx.mod.Module(symbol, data_names=("data",), label_names=("label",))
    module.bind(
        data_shapes=[("data", (1, 3, 128, 128))], label_shapes=[("label", (1, 1, 5))], for_training=False
    )
    module.init_params(initializer=mx.init.Xavier())
    return module.get_params()


def test_archive_members_params_keys_and_hyperparams(tmp_path: Path) -> None:
    symbol = build_training_graph("tiny", 2, 128)
    arg, aux = _initial(symbol)
    out = write_model_archive(
        tmp_path / "out" / "model.tar.gz",
        symbol,
        arg,
        aux,
        {"num_classes": "2", "num_training_samples": "9", "epochs": "3"},
    )
    with tarfile.open(out, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["hyperparams.json", "model_algo_1-0000.params", "model_algo_1-symbol.json"]
        assert all(m.isfile() for m in members.values())
        tar.extractall(tmp_path / "x", filter="data")
    loaded = mx.nd.load(str(tmp_path / "x" / "model_algo_1-0000.params"))
    assert {k for k in loaded if k.startswith("arg:")} == {f"arg:{k}" for k in arg}
    assert {k for k in loaded if k.startswith("aux:")} == {f"aux:{k}" for k in aux}
    assert "aux:bn_data_moving_mean" in loaded and "arg:multibox_target" not in loaded
    # MXNet's own loader takes it as a checkpoint.
    sym, loaded_arg, _ = mx.model.load_checkpoint(str(tmp_path / "x" / "model_algo_1"), 0)
    assert sym.list_outputs()[-1] == "det_out_output"
    assert (loaded_arg["tiny_conv1_weight"].asnumpy() == arg["tiny_conv1_weight"].asnumpy()).all()
    hyper = json.loads((tmp_path / "x" / "hyperparams.json").read_text())
    real = json.loads(REAL_HYPERPARAMS.read_text())
    assert set(hyper) == set(real)
    assert all(isinstance(v, str) for v in hyper.values())
    assert hyper["num_classes"] == "2" and hyper["epochs"] == "3" and hyper["optimizer"] == "sgd"
    symbol_back, arg_back, _, hyper_back = read_model_archive(out)
    assert symbol_back.tojson() == symbol.tojson() and set(arg_back) == set(arg) and hyper_back == hyper


def test_unknown_keys_stay_out_of_hyperparams_json() -> None:
    merged = full_hyperparameters({"num_classes": 2, "num_training_samples": "5", "colour": "blue"})
    assert "colour" not in merged and merged["num_classes"] == "2"


def test_missing_weights_are_refused(tmp_path: Path) -> None:
    symbol = build_training_graph("tiny", 1, 128)
    arg, aux = _initial(symbol)
    del arg["tiny_conv1_weight"]
    with pytest.raises(ValueError, match="lack 1 graph arguments"):
        write_model_archive(tmp_path / "model.tar.gz", symbol, arg, aux, {})
    assert not (tmp_path / "model.tar.gz").exists()
