"""Proof, in MXNet 1.9.1, that the pure-Python model fix produces a working deploy model.

On the real SageMaker training graph and on the builder's resnet-50 / vgg-16 graphs at 300 and 512:
the fixed graph loads in MXNet, MXNet re-serialises it to the same nodes in the same order, its
only output is the detection, and with random weights its output equals the training graph's
`det_out` (force suppression set alike) to within 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from conftest import REAL_TRAINING_GRAPH, SMALL_SHAPE, write_hyperparameters

from ml_tools.artifact import write_model_archive
from ml_tools.ssd_graph import build_deploy_graph, build_training_graph
from model_fix import DetectionSettings, FixOptions, dumps_symbol, fix_model, to_deploy_graph


def _fixed(training_json: str, force_suppress: bool) -> str:
    graph = json.loads(training_json)
    conversion = to_deploy_graph(
        graph, DetectionSettings(nms_threshold=0.45, nms_topk=400, force_suppress=force_suppress)
    )
    return dumps_symbol(conversion.graph)


def _random_weights(symbol: mx.sym.Symbol, data_shape: int, seed: int) -> tuple[dict, dict]:
    """Xavier weights (and moving statistics near 0/1) for every argument of the training graph."""
    mx.random.seed(seed)
    module = mx.mod.Module(symbol, data_names=("data",), label_names=("label",))
    module.bind(
        data_shapes=[("data", (1, 3, data_shape, data_shape))],
        label_shapes=[("label", (1, 2, 5))],
        for_training=False,
    )
    module.init_params(initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2))
    arg, aux = module.get_params()
    rng = np.random.default_rng(seed)
    for name, value in aux.items():
        if name.endswith("moving_var"):
            aux[name] = mx.nd.array(rng.uniform(0.5, 1.5, value.shape))
        else:
            aux[name] = mx.nd.array(rng.normal(0.0, 0.1, value.shape))
    return arg, aux


def _calibrate_heads(training: mx.sym.Symbol, arg: dict, aux: dict, image: np.ndarray) -> None:
    """Rescale each prediction conv so its outputs have a set spread (cls 2.0, loc 0.5).

    Random deep networks saturate: every score 1.0, every box clipped to the image, and a wrong
    deploy graph could then still match. A conv is linear in its weight and bias, so scaling both
    by k scales its output by k: afterwards scores and boxes are varied, NMS has real work to do.
    """
    names = [n[: -len("_weight")] for n in training.list_arguments() if n.endswith("_pred_conv_weight")]
    internals = training.get_internals()
    probe = mx.sym.Group([internals[n + "_output"] for n in names])
    outputs = _forward(probe, arg, aux, image, with_label=False)
    for name, out in zip(names, outputs, strict=True):
        k = (2.0 if "_cls_" in name else 0.5) / max(float(out.std()), 1e-6)
        arg[name + "_weight"] = arg[name + "_weight"] * k
        arg[name + "_bias"] = arg[name + "_bias"] * k


def _forward(
    symbol: mx.sym.Symbol, arg: dict, aux: dict, image: np.ndarray, with_label: bool
) -> list[np.ndarray]:
    shapes = {"data": image.shape}
    if with_label:
        shapes["label"] = (1, 2, 5)
    executor = symbol.simple_bind(mx.cpu(), grad_req="null", **shapes)
    for name, array in executor.arg_dict.items():
        if name == "data":
            array[:] = image
        elif name == "label":
            array[:] = -1.0
        else:
            array[:] = arg[name]
    for name, array in executor.aux_dict.items():
        array[:] = aux[name]
    return [out.asnumpy() for out in executor.forward(is_train=False)]


def _check_fixed_graph(training: mx.sym.Symbol, data_shape: int, force_suppress: bool) -> None:
    fixed_text = _fixed(training.tojson(), force_suppress)
    deploy = mx.sym.load_json(fixed_text)  # 1. loads
    ours = json.loads(fixed_text)
    again = json.loads(deploy.tojson())  # 2. MXNet re-serialises it to the same nodes, same order
    assert [(n["op"], n["name"], n["inputs"]) for n in again["nodes"]] == [
        (n["op"], n["name"], n["inputs"]) for n in ours["nodes"]
    ]
    assert again["arg_nodes"] == ours["arg_nodes"] and again["heads"] == ours["heads"]
    assert deploy.list_outputs() == ["detection_output"]  # 3. the detection is the only output
    names = {n["name"] for n in ours["nodes"]}
    assert not names & {"label", "multibox_target", "loc_loss", "cls_label", "det_out"}

    arg, aux = _random_weights(training, data_shape, seed=data_shape)  # 4. same output as det_out
    image = np.random.default_rng(1).uniform(0, 255, (1, 3, data_shape, data_shape)).astype(np.float32)
    _calibrate_heads(training, arg, aux, image)
    det_out = _forward(training, arg, aux, image, with_label=True)[3]
    (detection,) = _forward(deploy, arg, aux, image, with_label=False)
    assert detection.shape == det_out.shape
    kept = det_out[0][det_out[0, :, 0] >= 0]
    assert len(kept) > 10, "calibrated random weights give detections"
    assert len(np.unique(kept[:, 1])) > len(kept) // 2, "with varied scores"
    assert ((kept[:, 2:] > 0.001) & (kept[:, 2:] < 0.999)).mean() > 0.5, "and boxes inside the image"
    np.testing.assert_allclose(detection, det_out, rtol=0, atol=1e-6)


def _force_suppress(training_json: str) -> bool:
    nodes = json.loads(training_json)["nodes"]
    return next(n for n in nodes if n["name"] == "detection")["attrs"]["force_suppress"] == "True"


def test_real_sagemaker_training_graph() -> None:
    """The real resnet-50 graph (1 class, MXNet 1.3), at the 512 shape it was trained at."""
    training = mx.sym.load(str(REAL_TRAINING_GRAPH))
    _check_fixed_graph(training, 512, _force_suppress(training.tojson()))


@pytest.mark.parametrize(
    ("network", "data_shape", "num_classes"),
    [("resnet-50", 300, 2), ("resnet-50", 512, 3), ("vgg-16", 300, 2), ("vgg-16", 512, 1)],
)
def test_builder_training_graphs(network: str, data_shape: int, num_classes: int) -> None:
    training = build_training_graph(network, num_classes, data_shape)
    _check_fixed_graph(training, data_shape, force_suppress=False)


def test_force_suppression_on_both_sides() -> None:
    """deploy.py's default (force_suppress on), matched by a training graph built with it on."""
    training = build_training_graph("tiny", 2, 256, force_suppress=True)
    _check_fixed_graph(training, 256, force_suppress=True)


def test_fixed_graph_matches_deploy_py_rebuild() -> None:
    """The fixed graph is the graph deploy.py rebuilt (mxnet-ssd's get_symbol), node for node."""
    for network, shape in (("resnet-50", 512), ("vgg-16", 300)):
        fixed = json.loads(_fixed(build_training_graph(network, 2, shape).tojson(), force_suppress=False))
        rebuilt = json.loads(build_deploy_graph(network, 2, shape).tojson())
        assert [(n["op"], n["name"], n["inputs"]) for n in fixed["nodes"]] == [
            (n["op"], n["name"], n["inputs"]) for n in rebuilt["nodes"]
        ]


def test_fix_model_on_a_trainer_archive_loads_with_load_checkpoint(tmp_path: Path) -> None:
    """End to end: the trainer's model.tar.gz → fix_model → MXNet's load_checkpoint → same detections."""
    training = build_training_graph("tiny", 2, SMALL_SHAPE)
    arg, aux = _random_weights(training, SMALL_SHAPE, seed=3)
    image = np.random.default_rng(2).uniform(0, 255, (1, 3, SMALL_SHAPE, SMALL_SHAPE)).astype(np.float32)
    _calibrate_heads(training, arg, aux, image)
    hp = json.loads(write_hyperparameters(tmp_path / "hp.json").read_text())
    archive = write_model_archive(tmp_path / "model.tar.gz", training, arg, aux, hp)
    result = fix_model(archive, tmp_path / "out", FixOptions(force_suppress=False))
    prefix = str(result.symbol_path).removesuffix("-symbol.json")
    symbol, loaded_arg, loaded_aux = mx.model.load_checkpoint(prefix, 0)
    assert symbol.list_outputs() == ["detection_output"]
    expected = _forward(training, arg, aux, image, with_label=True)[3]
    (got,) = _forward(symbol, loaded_arg, loaded_aux, image, with_label=False)
    assert (expected[0, :, 0] >= 0).sum() > 10
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
