"""Tests for model_fix.ssd: finding the SSD body tensors by structure and building the deploy graph."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from model_fix.errors import NotSSDGraphError
from model_fix.graph import post_order, rebuild
from model_fix.ssd import (
    DetectionSettings,
    GraphKind,
    classify_graph,
    count_classes,
    detect_base_network,
    find_ssd_tensors,
    graph_arguments,
    normalise_network,
    parse_tuple,
    to_deploy_graph,
)

from .conftest import TRAINING_SYMBOL

TRAINING_OPS = {"SoftmaxOutput", "MakeLoss", "smooth_l1", "_contrib_MultiBoxTarget", "elemwise_sub"}


class GraphBuilder:
    """Builds symbol dicts the way mxnet-ssd's symbol_builder composes an SSD training graph."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.counts: list[int] = []

    def var(self, name: str) -> list[int]:
        return self.op("null", name, [])

    def op(self, op: str, name: str, inputs: list[list[int]], outputs: int = 1, **attrs: str) -> list[int]:
        node: dict[str, Any] = {"op": op, "name": name, "inputs": [list(e) for e in inputs]}
        if attrs:
            node["attrs"] = attrs
        self.nodes.append(node)
        self.counts.append(outputs)
        return [len(self.nodes) - 1, 0, 0]

    def conv(self, name: str, data: list[int], filters: int, kernel: str = "(3, 3)") -> list[int]:
        weight, bias = self.var(f"{name}_weight"), self.var(f"{name}_bias")
        return self.op("Convolution", name, [data, weight, bias], num_filter=str(filters), kernel=kernel)

    def graph(self, heads: list[list[int]]) -> dict[str, Any]:
        row_ptr = [0]
        for count in self.counts:
            row_ptr.append(row_ptr[-1] + count)
        raw = {
            "nodes": self.nodes,
            "arg_nodes": [i for i, n in enumerate(self.nodes) if n["op"] == "null"],
            "node_row_ptr": row_ptr,
            "heads": heads,
            "attrs": {"mxnet_version": ["int", 10901]},
        }
        return rebuild(raw, [], heads).graph  # in MXNet's own node order


def build_ssd_training_graph(
    layers: int = 7, num_classes: int = 3, odd_names: bool = False
) -> dict[str, Any]:
    """A vgg-16-style SSD training graph (L2-normalised first layer) with ``layers`` feature maps."""
    b = GraphBuilder()

    def n(name: str) -> str:
        return f"z{len(b.nodes)}_{name[::-1]}" if odd_names else name

    x = b.op("Activation", n("relu4_3"), [b.conv(n("conv4_3"), b.var("data"), 16)], act_type="relu")
    features = [x]
    x = b.op("Activation", n("relu7"), [b.conv(n("fc7"), x, 32, "(1, 1)")], act_type="relu")
    features.append(x)
    for k in range(2, layers):
        x = b.op(
            "Activation",
            n(f"multi_feat_{k}_relu"),
            [b.conv(n(f"multi_feat_{k}_conv"), x, 16)],
            act_type="relu",
        )
        features.append(x)
    norm = b.op("L2Normalization", n("relu4_3_norm"), [features[0]], mode="channel")
    features[0] = b.op("broadcast_mul", n("relu4_3_scale_mul"), [b.var(n("relu4_3_scale")), norm])
    locs, clss, priors = [], [], []
    for k, feature in enumerate(features):
        ratios = "(1,2,0.5)" if k in (0, layers - 1) else "(1,2,0.5,3,0.333333333333)"
        anchors = 2 + len(parse_tuple(ratios)) - 1
        for kind, per_anchor, out in (("loc", 4, locs), ("cls", num_classes + 1, clss)):
            conv = b.conv(n(f"f{k}_{kind}_pred_conv"), feature, anchors * per_anchor)
            t = b.op("transpose", n(f"f{k}_{kind}_t"), [conv], axes="(0, 2, 3, 1)")
            out.append(b.op("Flatten", n(f"f{k}_{kind}_flat"), [t]))
        prior = b.op(
            "_contrib_MultiBoxPrior",
            n(f"f{k}_anchors"),
            [feature],
            sizes="(0.1,0.14)",
            ratios=ratios,
            clip="False",
        )
        priors.append(b.op("Flatten", n(f"f{k}_anchor_flat"), [prior]))
    loc = b.op("Concat", n("multibox_loc_pred"), locs, dim="1", num_args=str(layers))
    cls = b.op("Concat", n("cls_concat"), clss, dim="1", num_args=str(layers))
    cls = b.op("Reshape", n("cls_reshape"), [cls], shape=f"(0, -1, {num_classes + 1})")
    cls = b.op("transpose", n("multibox_cls_pred"), [cls], axes="(0, 2, 1)")
    anchors = b.op("Concat", n("anchor_concat"), priors, dim="1", num_args=str(layers))
    anchors = b.op("Reshape", n("multibox_anchors"), [anchors], shape="(0, -1, 4)")
    target = b.op(
        "_contrib_MultiBoxTarget",
        n("multibox_target"),
        [anchors, b.var("label"), cls],
        3,
        variances="(0.1, 0.1, 0.2, 0.2)",
    )
    prob = b.op("SoftmaxOutput", n("cls_prob"), [cls, [target[0], 2, 0]], multi_output="True")
    diff = b.op("elemwise_sub", n("_minus0"), [loc, [target[0], 0, 0]])
    masked = b.op("elemwise_mul", n("_mul0"), [[target[0], 1, 0], diff])
    loc_loss = b.op("MakeLoss", n("loc_loss"), [b.op("smooth_l1", n("loc_loss_"), [masked], scalar="1.0")])
    cls_label = b.op("MakeLoss", n("cls_label"), [[target[0], 2, 0]], grad_scale="0")
    det = b.op(
        "_contrib_MultiBoxDetection",
        n("detection"),
        [prob, loc, anchors],
        nms_threshold="0.45",
        force_suppress="False",
        variances="(0.1, 0.1, 0.2, 0.2)",
        nms_topk="400",
    )
    det_out = b.op("MakeLoss", n("det_out"), [det], grad_scale="0")
    return b.graph([prob, loc_loss, cls_label, det_out])


@pytest.fixture
def fixture_graph() -> dict[str, Any]:
    return json.loads(TRAINING_SYMBOL.read_text())


def _names(graph: dict[str, Any], tensors) -> tuple[str, str, str]:
    nodes = graph["nodes"]
    return tuple(nodes[e[0]]["name"] for e in (tensors.cls_pred, tensors.loc_pred, tensors.anchors))


def test_finds_the_three_tensors_of_the_sagemaker_graph(fixture_graph) -> None:
    tensors = find_ssd_tensors(fixture_graph)
    assert _names(fixture_graph, tensors) == ("multibox_cls_pred", "multibox_loc_pred", "multibox_anchors")
    assert count_classes(fixture_graph, tensors) == 1
    assert classify_graph(fixture_graph) is GraphKind.TRAINING


def test_finds_tensors_by_structure_when_every_name_differs(fixture_graph) -> None:
    renamed = copy.deepcopy(fixture_graph)
    for i, node in enumerate(renamed["nodes"]):
        node["name"] = f"node{i}"
    tensors = find_ssd_tensors(renamed)
    original = find_ssd_tensors(fixture_graph)
    assert (tensors.cls_pred, tensors.loc_pred, tensors.anchors) == (
        original.cls_pred,
        original.loc_pred,
        original.anchors,
    )
    deploy = to_deploy_graph(renamed).graph
    head = deploy["nodes"][-1]
    assert (deploy["nodes"][head["inputs"][0][0]]["name"], head["name"]) == ("cls_prob", "detection")


def _assert_is_deploy_graph(deploy: dict[str, Any], training: dict[str, Any]) -> None:
    nodes = deploy["nodes"]
    assert deploy["heads"] == [[len(nodes) - 1, 0, 0]]
    head, softmax = nodes[-1], nodes[deploy["nodes"][-1]["inputs"][0][0]]
    assert (head["op"], head["name"]) == ("_contrib_MultiBoxDetection", "detection")
    assert (softmax["op"], softmax["name"], softmax["attrs"]) == (
        "SoftmaxActivation",
        "cls_prob",
        {"mode": "channel"},
    )
    assert [nodes[e[0]]["op"] for e in head["inputs"]] == ["SoftmaxActivation", "Concat", "Reshape"]
    assert nodes[softmax["inputs"][0][0]]["op"] == "transpose"
    assert not {n["op"] for n in nodes} & TRAINING_OPS
    assert "label" not in {n["name"] for n in nodes}
    assert post_order(nodes, [len(nodes) - 1]) == list(range(len(nodes)))
    assert deploy["arg_nodes"] == [i for i, n in enumerate(nodes) if n["op"] == "null"]
    softmax_id = head["inputs"][0][0]
    counts = {
        n["name"]: b - a
        for n, a, b in zip(
            training["nodes"], training["node_row_ptr"], training["node_row_ptr"][1:], strict=False
        )
    }
    counts_in_order = [
        1 if i in (softmax_id, len(nodes) - 1) else counts[n["name"]] for i, n in enumerate(nodes)
    ]
    assert deploy["node_row_ptr"] == [sum(counts_in_order[:i]) for i in range(len(nodes) + 1)]
    assert deploy["attrs"] == training["attrs"]
    kept = {n["name"]: n for n in training["nodes"]}
    for i, node in enumerate(nodes):  # every kept node is unchanged apart from input numbering
        if i not in (softmax_id, len(nodes) - 1):
            assert node.get("attrs") == kept[node["name"]].get("attrs")
            assert node["op"] == kept[node["name"]]["op"]


def test_converts_the_sagemaker_graph(fixture_graph) -> None:
    before = copy.deepcopy(fixture_graph)
    result = to_deploy_graph(fixture_graph)
    assert fixture_graph == before  # pure
    assert (result.kind, result.num_classes, result.removed_nodes, result.changed) == (
        GraphKind.TRAINING,
        1,
        10,
        True,
    )
    _assert_is_deploy_graph(result.graph, fixture_graph)
    assert result.graph["nodes"][-1]["attrs"] == {
        "force_suppress": "True",
        "nms_threshold": "0.45",
        "nms_topk": "400",
        "variances": "(0.1, 0.1, 0.2, 0.2)",
    }
    assert len(result.graph["nodes"]) == len(fixture_graph["nodes"]) - 10 + 2


@pytest.mark.parametrize(("layers", "num_classes"), [(6, 1), (7, 3), (7, 20), (6, 2)])
def test_converts_vgg_style_graphs_of_any_depth_and_class_count(layers: int, num_classes: int) -> None:
    training = build_ssd_training_graph(layers, num_classes)
    result = to_deploy_graph(training)
    assert result.num_classes == num_classes
    assert detect_base_network(training) == "vgg-16"
    _assert_is_deploy_graph(result.graph, training)
    assert result.removed_nodes == 10
    priors = [n for n in result.graph["nodes"] if n["op"] == "_contrib_MultiBoxPrior"]
    assert len(priors) == layers


def test_converts_a_graph_whose_names_say_nothing() -> None:
    training = build_ssd_training_graph(7, 4, odd_names=True)
    assert not any(n["name"].startswith("multibox") for n in training["nodes"])
    result = to_deploy_graph(training)
    assert result.num_classes == 4
    _assert_is_deploy_graph(result.graph, training)


def test_detection_settings_are_written_explicitly(fixture_graph) -> None:
    settings = DetectionSettings(nms_threshold=0.3, nms_topk=100, force_suppress=False)
    attrs = to_deploy_graph(fixture_graph, settings).graph["nodes"][-1]["attrs"]
    assert (attrs["nms_threshold"], attrs["nms_topk"], attrs["force_suppress"]) == ("0.3", "100", "False")


def test_variances_and_clip_come_from_the_training_graph(fixture_graph) -> None:
    graph = copy.deepcopy(fixture_graph)
    detection = next(n for n in graph["nodes"] if n["op"] == "_contrib_MultiBoxDetection")
    detection["attrs"].update(variances="(0.2, 0.2, 0.1, 0.1)", clip="False", threshold="0.05")
    attrs = to_deploy_graph(graph).graph["nodes"][-1]["attrs"]
    assert (attrs["variances"], attrs["clip"], attrs["threshold"]) == (
        "(0.2, 0.2, 0.1, 0.1)",
        "False",
        "0.05",
    )


def test_without_a_detection_node_tensors_and_variances_come_from_the_target(fixture_graph) -> None:
    graph = copy.deepcopy(fixture_graph)
    target = next(n for n in graph["nodes"] if n["op"] == "_contrib_MultiBoxTarget")
    target["attrs"]["variances"] = "(0.1, 0.1, 0.3, 0.3)"
    no_detection = rebuild(graph, [], graph["heads"][:3]).graph
    assert not any(n["op"] == "_contrib_MultiBoxDetection" for n in no_detection["nodes"])
    result = to_deploy_graph(no_detection)
    assert result.graph["nodes"][-1]["attrs"]["variances"] == "(0.1, 0.1, 0.3, 0.3)"
    assert [n["name"] for n in result.graph["nodes"]] == [
        n["name"] for n in to_deploy_graph(fixture_graph).graph["nodes"]
    ]


def test_a_canonical_deploy_graph_passes_through_unchanged(fixture_graph) -> None:
    deploy = to_deploy_graph(fixture_graph).graph
    again = to_deploy_graph(deploy, DetectionSettings(nms_threshold=0.9))
    assert (again.kind, again.changed, again.removed_nodes) == (GraphKind.DEPLOY, False, 0)
    assert again.graph is deploy


def test_a_deploy_graph_with_stray_nodes_or_no_nms_topk_is_normalised(fixture_graph) -> None:
    deploy = to_deploy_graph(fixture_graph).graph
    stray = copy.deepcopy(deploy)
    stray["nodes"].insert(0, {"op": "null", "name": "orphan", "inputs": []})
    for node in stray["nodes"][1:]:
        node["inputs"] = [[e[0] + 1, *e[1:]] for e in node["inputs"]]
    stray["heads"] = [[len(stray["nodes"]) - 1, 0, 0]]
    stray["node_row_ptr"] = [0, *[v + 1 for v in deploy["node_row_ptr"]]]
    result = to_deploy_graph(stray)
    assert (result.changed, result.removed_nodes, result.graph) == (True, 1, deploy)

    no_topk = copy.deepcopy(deploy)
    del no_topk["nodes"][-1]["attrs"]["nms_topk"]
    result = to_deploy_graph(no_topk, DetectionSettings(nms_topk=200))
    assert result.changed and result.graph["nodes"][-1]["attrs"]["nms_topk"] == "200"


def _classifier() -> dict[str, Any]:
    b = GraphBuilder()
    fc = b.op("FullyConnected", "fc", [b.conv("conv", b.var("data"), 8), b.var("fc_weight")], num_hidden="10")
    return b.graph([b.op("SoftmaxOutput", "softmax", [fc, b.var("softmax_label")])])


def test_a_graph_without_multibox_layers_is_not_ssd() -> None:
    with pytest.raises(
        NotSSDGraphError, match=r"no MultiBoxTarget or MultiBoxDetection node \(heads are \['softmax'\]\)"
    ):
        to_deploy_graph(_classifier(), source="cls-symbol.json")


def test_two_targets_are_ambiguous(fixture_graph) -> None:
    graph = copy.deepcopy(fixture_graph)
    target = next(n for n in graph["nodes"] if n["op"] == "_contrib_MultiBoxTarget")
    graph["nodes"].append({**target, "name": "second_target"})
    graph["node_row_ptr"].append(graph["node_row_ptr"][-1] + 3)
    with pytest.raises(NotSSDGraphError, match="2 MultiBoxTarget nodes"):
        find_ssd_tensors(graph)


def test_disagreeing_evidence_is_reported(fixture_graph) -> None:
    graph = copy.deepcopy(fixture_graph)
    detection = next(n for n in graph["nodes"] if n["op"] == "_contrib_MultiBoxDetection")
    detection["inputs"][2] = [501, 0, 0]  # concat1 instead of multibox_anchors
    with pytest.raises(
        NotSSDGraphError, match=r"inconsistent SSD graph: anchors: .*'multibox_anchors'.*'concat1'"
    ):
        find_ssd_tensors(graph, "x-symbol.json")


def test_inconsistent_class_counts_are_reported(fixture_graph) -> None:
    graph = copy.deepcopy(fixture_graph)
    reshape = next(n for n in graph["nodes"] if n["name"] == "reshape0")
    reshape["attrs"]["shape"] = "(0, -1, 5)"
    with pytest.raises(NotSSDGraphError, match="inconsistent class count: Reshape 'reshape0' shape gives 4"):
        to_deploy_graph(graph)
    graph = copy.deepcopy(fixture_graph)
    conv = next(n for n in graph["nodes"] if n["name"] == "_plus12_cls_pred_conv")
    conv["attrs"]["num_filter"] = "9"
    with pytest.raises(NotSSDGraphError, match="num_filter 9, not a multiple of the 4 anchors"):
        to_deploy_graph(graph)


def test_a_detection_head_without_softmax_or_target_is_not_ssd(fixture_graph) -> None:
    deploy = copy.deepcopy(to_deploy_graph(fixture_graph).graph)
    deploy["nodes"][-1]["inputs"][0] = deploy["nodes"][-2]["inputs"][0]  # bypass the softmax
    with pytest.raises(NotSSDGraphError, match="cannot find the cls_pred tensor"):
        to_deploy_graph(rebuild(deploy, [], deploy["heads"]).graph)


def test_a_detection_graph_with_other_heads_is_neither_kind(fixture_graph) -> None:
    deploy = copy.deepcopy(to_deploy_graph(fixture_graph).graph)
    deploy["heads"].append([0, 0, 0])
    with pytest.raises(NotSSDGraphError, match="nor a deploy graph"):
        classify_graph(deploy)


def test_graph_arguments_split_learned_weights_from_aux_states(fixture_graph) -> None:
    args, aux = graph_arguments(fixture_graph)
    assert not {"data", "label"} & (args | aux)
    assert aux and all(name.endswith(("moving_mean", "moving_var")) for name in aux)
    assert "multi_feat_2_conv_3x3_conv_weight" in args
    assert not args & aux


def test_network_names() -> None:
    assert detect_base_network(json.loads(TRAINING_SYMBOL.read_text())) == "resnet-50"
    assert detect_base_network(_classifier()) is None
    assert normalise_network("vgg16_reduced") == normalise_network("VGG-16") == "vgg-16"
    assert normalise_network("resnet50") == "resnet-50"
    assert normalise_network("mobilenet") == "mobilenet"
