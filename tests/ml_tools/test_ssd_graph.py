"""The SSD graph builder: SageMaker's real training graph, reproduced node for node."""

from __future__ import annotations

import json

import pytest
from conftest import REAL_TRAINING_GRAPH

from ml_tools.ssd_graph import build_deploy_graph, build_training_graph, ssd_config

HEAD_NODES = {
    "multibox_cls_pred": "transpose",
    "multibox_loc_pred": "Concat",
    "multibox_anchors": "Reshape",
    "multibox_target": "_contrib_MultiBoxTarget",
    "cls_prob": "SoftmaxOutput",
    "loc_loss_": "smooth_l1",
    "loc_loss": "MakeLoss",
    "cls_label": "MakeLoss",
    "detection": "_contrib_MultiBoxDetection",
    "det_out": "MakeLoss",
    "label": "null",
}


def test_resnet50_512_equals_the_real_sagemaker_graph() -> None:
    """Every node (op, name, attributes, inputs), arg_nodes, node_row_ptr and heads are identical;
    only the recorded MXNet version differs (1.3 there, 1.9.1 here)."""
    real = json.loads(REAL_TRAINING_GRAPH.read_text())
    ours = json.loads(build_training_graph("resnet-50", 1, 512).tojson())
    assert len(ours["nodes"]) == len(real["nodes"]) == 544
    for index, (theirs, mine) in enumerate(zip(real["nodes"], ours["nodes"], strict=True)):
        assert mine == theirs, f"node {index}"
    for key in ("arg_nodes", "node_row_ptr", "heads"):
        assert ours[key] == real[key], key
    assert real["attrs"] == {"mxnet_version": ["int", 10300]}
    assert ours["attrs"] == {"mxnet_version": ["int", 10901]}


@pytest.mark.parametrize("network", ["resnet-50", "vgg-16", "tiny"])
@pytest.mark.parametrize("data_shape", [300, 512])
def test_every_network_has_the_algorithms_head_and_outputs(network: str, data_shape: int) -> None:
    symbol = build_training_graph(network, 3, data_shape)
    assert symbol.list_outputs() == [
        "cls_prob_output",
        "loc_loss_output",
        "cls_label_output",
        "det_out_output",
    ]
    nodes = {n["name"]: n["op"] for n in json.loads(symbol.tojson())["nodes"]}
    for name, op in HEAD_NODES.items():
        assert nodes.get(name) == op, name
    _, out_shapes, _ = symbol.infer_shape(data=(2, 3, data_shape, data_shape), label=(2, 4, 5))
    anchors = out_shapes[3][1]
    assert out_shapes[0] == (2, 4, anchors)  # 3 classes + background
    assert out_shapes[3] == (2, anchors, 6)


def test_vgg16_anchor_counts_are_ssd300_and_ssd512s() -> None:
    for shape, anchors in ((300, 8732), (512, 24576)):
        _, out_shapes, _ = build_training_graph("vgg-16", 2, shape).infer_shape(
            data=(1, 3, shape, shape), label=(1, 1, 5)
        )
        assert out_shapes[3][1] == anchors
    assert len(ssd_config("vgg-16", 512).from_layers) == 7
    assert ssd_config("vgg-16", 300).normalizations[0] == 20


def test_deploy_graph_ends_in_detection_only() -> None:
    deploy = build_deploy_graph("resnet-50", 2, 300)
    assert deploy.list_outputs() == ["detection_output"]
    assert "label" not in deploy.list_arguments()


def test_anchor_sizes_are_sagemakers_geometric_means() -> None:
    assert ssd_config("resnet-50", 512).sizes[:2] == [(0.1, 0.141421), (0.2, 0.272029)]
    assert ssd_config("resnet-50", 512).sizes[-1] == (0.88, 0.961249)


@pytest.mark.parametrize(
    ("network", "num_classes", "shape", "message"),
    [("mobilenet", 2, 300, "base_network"), ("tiny", 0, 300, "num_classes"), ("tiny", 2, 32, "data_shape")],
)
def test_bad_arguments_are_refused(network: str, num_classes: int, shape: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_training_graph(network, num_classes, shape)
