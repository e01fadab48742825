"""SSD graph structure: find the three body tensors, count classes, build the deploy graph.

A SageMaker (mxnet-ssd) training graph ends in::

    MultiBoxTarget(anchors, label, cls_preds)           -> loc_target, loc_mask, cls_target
    SoftmaxOutput(cls_preds, cls_target)   "cls_prob"
    MakeLoss(smooth_l1(loc_mask * (loc_preds - loc_target)))   "loc_loss"
    MakeLoss(cls_target)                   "cls_label"
    MakeLoss(MultiBoxDetection(cls_prob, loc_preds, anchors))   "det_out"

mxnet-ssd's ``deploy.py`` rebuilt the test graph, which keeps the body up to ``cls_preds``
(``multibox_cls_pred``, a transpose), ``loc_preds`` (``multibox_loc_pred``, a Concat) and
``anchors`` (``multibox_anchors``, a Reshape), and ends in::

    MultiBoxDetection(SoftmaxActivation(cls_preds, mode="channel") "cls_prob",
                      loc_preds, anchors)   "detection"

The tensors are located through the operators that consume them (MultiBoxTarget,
MultiBoxDetection and the localisation loss), never by name alone, so any base network works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum
from typing import Any, NamedTuple

from model_fix.errors import NotSSDGraphError
from model_fix.graph import post_order, rebuild
from model_fix.symbol_json import Graph, node_attrs

TARGET_OPS = frozenset({"_contrib_MultiBoxTarget", "MultiBoxTarget"})
DETECTION_OPS = frozenset({"_contrib_MultiBoxDetection", "MultiBoxDetection"})
PRIOR_OPS = frozenset({"_contrib_MultiBoxPrior", "MultiBoxPrior"})
TRAINING_ONLY_OPS = frozenset({"SoftmaxOutput", "MakeLoss", "smooth_l1", *TARGET_OPS})
SOFTMAX_OPS = frozenset({"SoftmaxOutput", "SoftmaxActivation", "softmax"})
SUBTRACT_OPS = frozenset({"elemwise_sub", "_minus", "_Minus", "broadcast_sub", "broadcast_minus"})
#: Inputs of these operators at these positions are auxiliary states (``aux:`` params).
AUX_INPUTS = {
    "BatchNorm": (3, 4),
    "BatchNorm_v1": (3, 4),
    "CuDNNBatchNorm": (3, 4),
    "SyncBatchNorm": (3, 4),
    "_contrib_SyncBatchNorm": (3, 4),
}
#: Graph inputs fed at run time, never stored in the .params file.
DATA_INPUTS = frozenset({"data", "label"})
DEFAULT_VARIANCES = "(0.1, 0.1, 0.2, 0.2)"
#: Attributes of the training detection node carried over to the deploy one (besides the
#: nms_threshold, force_suppress and nms_topk the caller chooses).
COPIED_DETECTION_ATTRS = ("variances", "clip", "threshold", "background_id")


class GraphKind(Enum):
    """What an SSD symbol graph is for."""

    TRAINING = "training"
    DEPLOY = "deploy"


class SSDTensors(NamedTuple):
    """The body outputs the detection head reads: each a ``[node_id, output_index, version]`` entry."""

    cls_pred: list[int]
    loc_pred: list[int]
    anchors: list[int]
    detection: int | None
    target: int | None


class DetectionSettings(NamedTuple):
    """Parameters of the deploy graph's MultiBoxDetection."""

    nms_threshold: float = 0.45
    nms_topk: int = 400
    force_suppress: bool = True


class DeployConversion(NamedTuple):
    """Result of :func:`to_deploy_graph`."""

    graph: Graph
    kind: GraphKind
    num_classes: int
    removed_nodes: int
    changed: bool


def _nodes_with_op(nodes: Sequence[dict[str, Any]], ops: frozenset[str]) -> list[int]:
    return [i for i, node in enumerate(nodes) if node["op"] in ops]


def _only(indices: list[int], what: str, source: str) -> int | None:
    if len(indices) > 1:
        raise NotSSDGraphError(f"{source}: {len(indices)} {what} nodes (at {indices}); expected one")
    return indices[0] if indices else None


def find_ssd_tensors(graph: Graph, source: str = "<symbol>") -> SSDTensors:
    """Locate ``cls_pred``, ``loc_pred`` and ``anchors`` from the operators that consume them.

    Evidence from MultiBoxTarget, the localisation loss and MultiBoxDetection must agree;
    raises :class:`NotSSDGraphError` when they disagree or a tensor cannot be found.
    """
    nodes = graph["nodes"]
    target = _only(_nodes_with_op(nodes, TARGET_OPS), "MultiBoxTarget", source)
    detection = _only(_nodes_with_op(nodes, DETECTION_OPS), "MultiBoxDetection", source)
    if target is None and detection is None:
        raise NotSSDGraphError(
            f"{source}: not an SSD graph: no MultiBoxTarget or MultiBoxDetection node "
            f"(heads are {[nodes[e[0]]['name'] for e in graph['heads']]})"
        )
    found: dict[str, list[tuple[str, list[int]]]] = {"cls_pred": [], "loc_pred": [], "anchors": []}

    if target is not None:
        inputs = nodes[target]["inputs"]
        if len(inputs) != 3:
            raise NotSSDGraphError(
                f"{source}: MultiBoxTarget {nodes[target]['name']!r} has {len(inputs)} inputs"
            )
        found["anchors"].append(("MultiBoxTarget input 0", inputs[0]))
        found["cls_pred"].append(("MultiBoxTarget input 2", inputs[2]))
        for i, node in enumerate(nodes):
            ins = node["inputs"]
            if node["op"] == "SoftmaxOutput" and len(ins) >= 2 and ins[1][:2] == [target, 2]:
                found["cls_pred"].append((f"SoftmaxOutput {node['name']!r} data", ins[0]))
            if node["op"] in SUBTRACT_OPS and len(ins) == 2 and ins[1][:2] == [target, 0]:
                found["loc_pred"].append((f"loss {nodes[i]['name']!r} minuend", ins[0]))

    if detection is not None:
        inputs = nodes[detection]["inputs"]
        if len(inputs) != 3:
            name = nodes[detection]["name"]
            raise NotSSDGraphError(f"{source}: MultiBoxDetection {name!r} has {len(inputs)} inputs")
        prob = nodes[inputs[0][0]]
        if prob["op"] in SOFTMAX_OPS and prob["inputs"]:
            found["cls_pred"].append(
                (f"MultiBoxDetection's softmax {prob['name']!r} data", prob["inputs"][0])
            )
        found["loc_pred"].append(("MultiBoxDetection input 1", inputs[1]))
        found["anchors"].append(("MultiBoxDetection input 2", inputs[2]))

    chosen: dict[str, list[int]] = {}
    for tensor, evidence in found.items():
        if not evidence:
            raise NotSSDGraphError(f"{source}: not an SSD graph: cannot find the {tensor} tensor")
        distinct = {tuple(entry[:2]) for _, entry in evidence}
        if len(distinct) > 1:
            detail = "; ".join(f"{why} is {nodes[entry[0]]['name']!r}" for why, entry in evidence)
            raise NotSSDGraphError(f"{source}: inconsistent SSD graph: {tensor}: {detail}")
        entry = evidence[0][1]
        if nodes[entry[0]]["op"] == "null":
            raise NotSSDGraphError(f"{source}: {tensor} is the variable {nodes[entry[0]]['name']!r}")
        chosen[tensor] = list(entry)
    return SSDTensors(
        cls_pred=chosen["cls_pred"],
        loc_pred=chosen["loc_pred"],
        anchors=chosen["anchors"],
        detection=detection,
        target=target,
    )


def classify_graph(graph: Graph, source: str = "<symbol>") -> GraphKind:
    """Tell a training graph from a deploy graph; raise :class:`NotSSDGraphError` for neither."""
    return _classify(graph, find_ssd_tensors(graph, source), source)


def _classify(graph: Graph, tensors: SSDTensors, source: str) -> GraphKind:
    nodes = graph["nodes"]
    if tensors.target is not None or any(n["op"] in TRAINING_ONLY_OPS for n in nodes):
        return GraphKind.TRAINING
    heads = graph["heads"]
    if tensors.detection is None or len(heads) != 1 or heads[0][0] != tensors.detection:
        raise NotSSDGraphError(
            f"{source}: not an SSD training graph (no MultiBoxTarget) nor a deploy graph "
            f"(its only head must be MultiBoxDetection; heads are "
            f"{[nodes[e[0]]['name'] for e in heads]})"
        )
    return GraphKind.DEPLOY


def parse_tuple(text: str) -> list[str]:
    """Items of an MXNet tuple attribute such as ``"(0.1,0.141421)"`` or ``"[1, 2]"``."""
    return [item.strip() for item in text.strip().strip("()[]").split(",") if item.strip()]


def _walk_to(
    nodes: Sequence[dict[str, Any]], start: int, ops: frozenset[str], through: frozenset[str]
) -> int | None:
    """From ``start``, follow first inputs through ``through`` ops to the first node in ``ops``."""
    index: int | None = start
    for _ in range(8):
        if index is None:
            return None
        node = nodes[index]
        if node["op"] in ops:
            return index
        if node["op"] not in through or not node["inputs"]:
            return None
        index = node["inputs"][0][0]
    return None


_PASS_THROUGH = frozenset({"Flatten", "flatten", "transpose", "Reshape", "reshape", "Activation"})


def _int_attr(node: dict[str, Any], key: str) -> int | None:
    try:
        return int(node_attrs(node)[key])
    except (KeyError, ValueError):
        return None


def count_classes(graph: Graph, tensors: SSDTensors, source: str = "<symbol>") -> int:
    """Number of object classes (background excluded) the graph predicts.

    Two independent readings must agree: the ``(0, -1, classes + 1)`` Reshape under ``cls_pred``,
    and, per feature layer, the class-prediction Convolution's ``num_filter`` divided by the
    anchors of the matching MultiBoxPrior (``len(sizes) + len(ratios) - 1``).
    """
    nodes = graph["nodes"]
    readings: list[tuple[str, int]] = []

    reshape = _walk_to(
        nodes, tensors.cls_pred[0], frozenset({"Reshape", "reshape"}), frozenset({"transpose"})
    )
    if reshape is not None:
        shape = parse_tuple(node_attrs(nodes[reshape]).get("shape", ""))
        if shape and shape[-1].lstrip("-").isdigit() and int(shape[-1]) >= 2:
            readings.append((f"Reshape {nodes[reshape]['name']!r} shape", int(shape[-1]) - 1))

    cls_concat = (
        None
        if reshape is None
        else _walk_to(nodes, nodes[reshape]["inputs"][0][0], frozenset({"Concat", "concat"}), frozenset())
    )
    anchor_concat = _walk_to(
        nodes, tensors.anchors[0], frozenset({"Concat", "concat"}), frozenset({"Reshape", "reshape"})
    )
    if cls_concat is not None and anchor_concat is not None:
        cls_inputs = nodes[cls_concat]["inputs"]
        anchor_inputs = nodes[anchor_concat]["inputs"]
        if len(cls_inputs) == len(anchor_inputs):
            for layer, (cls_in, anchor_in) in enumerate(zip(cls_inputs, anchor_inputs, strict=True)):
                conv = _walk_to(nodes, cls_in[0], frozenset({"Convolution"}), _PASS_THROUGH)
                prior = _walk_to(nodes, anchor_in[0], PRIOR_OPS, _PASS_THROUGH)
                if conv is None or prior is None:
                    continue
                filters = _int_attr(nodes[conv], "num_filter")
                prior_attrs = node_attrs(nodes[prior])
                anchors = (
                    len(parse_tuple(prior_attrs.get("sizes", "(1)")))
                    + len(parse_tuple(prior_attrs.get("ratios", "(1)")))
                    - 1
                )
                if filters is None or anchors < 1 or filters % anchors:
                    raise NotSSDGraphError(
                        f"{source}: layer {layer}: class conv {nodes[conv]['name']!r} has num_filter "
                        f"{filters}, not a multiple of the {anchors} anchors of {nodes[prior]['name']!r}"
                    )
                readings.append((f"conv {nodes[conv]['name']!r} num_filter/anchors", filters // anchors - 1))

    if not readings:
        raise NotSSDGraphError(f"{source}: cannot determine the number of classes from the graph")
    values = {value for _, value in readings}
    if len(values) > 1 or min(values) < 1:
        detail = "; ".join(f"{why} gives {value}" for why, value in readings)
        raise NotSSDGraphError(f"{source}: inconsistent class count: {detail}")
    return values.pop()


_NETWORK_ALIASES = {
    "resnet-50": "resnet-50",
    "resnet50": "resnet-50",
    "resnet_50": "resnet-50",
    "vgg-16": "vgg-16",
    "vgg16": "vgg-16",
    "vgg16_reduced": "vgg-16",
    "vgg_16": "vgg-16",
}


def normalise_network(name: str) -> str:
    """Canonical base network name (``vgg16_reduced`` -> ``vgg-16``); unknown names unchanged."""
    return _NETWORK_ALIASES.get(name.strip().lower(), name.strip().lower())


def detect_base_network(graph: Graph) -> str | None:
    """``"resnet-50"`` or ``"vgg-16"`` from the graph's layer names, or None when unrecognised."""
    names = [node["name"] for node in graph["nodes"]]
    if any(re.match(r"stage\d+_unit\d+_", name) for name in names):
        return "resnet-50"
    if any(re.match(r"(conv|relu)4_3", name) for name in names):
        return "vgg-16"
    return None


def graph_arguments(graph: Graph) -> tuple[set[str], set[str]]:
    """Names of the graph's learned arguments and auxiliary states (data inputs excluded)."""
    nodes = graph["nodes"]
    aux: set[str] = set()
    for node in nodes:
        for position in AUX_INPUTS.get(node["op"], ()):
            if position < len(node["inputs"]):
                aux.add(nodes[node["inputs"][position][0]]["name"])
    variables = {node["name"] for node in nodes if node["op"] == "null"} - DATA_INPUTS
    return variables - aux, aux & variables


def _format_float(value: float) -> str:
    return str(float(value))


def _detection_attrs(
    nodes: Sequence[dict[str, Any]], tensors: SSDTensors, settings: DetectionSettings
) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if tensors.detection is not None:
        old = node_attrs(nodes[tensors.detection])
        attrs.update({key: old[key] for key in COPIED_DETECTION_ATTRS if key in old})
    if "variances" not in attrs and tensors.target is not None:
        variances = node_attrs(nodes[tensors.target]).get("variances")
        if variances is not None:
            attrs["variances"] = variances
    attrs.setdefault("variances", DEFAULT_VARIANCES)
    attrs["nms_threshold"] = _format_float(settings.nms_threshold)
    attrs["force_suppress"] = str(bool(settings.force_suppress))
    attrs["nms_topk"] = str(int(settings.nms_topk))
    return attrs


def _attrs_key(nodes: Sequence[dict[str, Any]]) -> str:
    """The attribute key the graph's nodes use (``attrs`` since MXNet 1.0)."""
    for node in nodes:
        for key in ("attrs", "attr", "param"):
            if key in node:
                return key
    return "attrs"


def to_deploy_graph(
    graph: Graph,
    settings: DetectionSettings = DetectionSettings(),
    source: str = "<symbol>",
) -> DeployConversion:
    """Turn an SSD training graph dict into the deploy graph dict (pure; the input is not modified).

    The deploy graph's only head is ``detection`` = MultiBoxDetection(SoftmaxActivation
    ``cls_prob`` (mode channel) of cls_pred, loc_pred, anchors), with ``settings`` and the
    training graph's variances (and clip/threshold/background_id when set); every node it does
    not reach is removed and the rest are in MXNet's order. A deploy graph is returned unchanged
    (``changed`` False) when it is already in that canonical form; otherwise (extra nodes, other
    order, no explicit ``nms_topk``) it is rebuilt with its own detection attributes.
    """
    tensors = find_ssd_tensors(graph, source)
    kind = _classify(graph, tensors, source)
    num_classes = count_classes(graph, tensors, source)
    nodes = graph["nodes"]

    if kind is GraphKind.DEPLOY:
        detection = tensors.detection
        assert detection is not None
        attrs = dict(node_attrs(nodes[detection]))
        canonical = post_order(nodes, [detection]) == list(range(len(nodes)))
        if canonical and "nms_topk" in attrs:
            return DeployConversion(graph, kind, num_classes, removed_nodes=0, changed=False)
        attrs.setdefault("nms_topk", str(int(settings.nms_topk)))
        head = dict(nodes[detection])
        head[_attrs_key([head])] = attrs
        patched = dict(graph)
        patched["nodes"] = [*nodes[:detection], head, *nodes[detection + 1 :]]
        rebuilt = rebuild(patched, [], [[detection, 0, 0]])
        return DeployConversion(rebuilt.graph, kind, num_classes, rebuilt.removed_nodes, changed=True)

    kept = post_order(nodes, [tensors.cls_pred[0], tensors.loc_pred[0], tensors.anchors[0]])
    taken = {nodes[i]["name"] for i in kept} & {"cls_prob", "detection"}
    if taken:
        raise NotSSDGraphError(f"{source}: the body already has a node named {sorted(taken)}")
    attrs_key = _attrs_key(nodes)
    softmax_id = len(nodes)
    softmax = {
        "op": "SoftmaxActivation",
        "name": "cls_prob",
        attrs_key: {"mode": "channel"},
        "inputs": [tensors.cls_pred],
    }
    detection = {
        "op": "_contrib_MultiBoxDetection",
        "name": "detection",
        attrs_key: _detection_attrs(nodes, tensors, settings),
        "inputs": [[softmax_id, 0, 0], tensors.loc_pred, tensors.anchors],
    }
    rebuilt = rebuild(graph, [softmax, detection], [[softmax_id + 1, 0, 0]])
    return DeployConversion(rebuilt.graph, kind, num_classes, rebuilt.removed_nodes, changed=True)
