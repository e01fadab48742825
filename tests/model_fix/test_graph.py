"""Tests for model_fix.graph: MXNet's post-order node numbering and rebuilding from new heads."""

from __future__ import annotations

import copy
import json

from model_fix.graph import post_order, reachable_node_count, rebuild

from .conftest import TRAINING_SYMBOL


def _node(op: str, name: str, *inputs: int, **extra) -> dict:
    return {"op": op, "name": name, "inputs": [[i, 0, 0] for i in inputs], **extra}


def test_reproduces_the_order_mxnet_saved_a_training_graph_in() -> None:
    graph = json.loads(TRAINING_SYMBOL.read_text())
    heads = [entry[0] for entry in graph["heads"]]
    assert post_order(graph["nodes"], heads) == list(range(len(graph["nodes"])))
    assert reachable_node_count(graph) == len(graph["nodes"])


def test_inputs_in_order_then_control_deps_shared_nodes_once() -> None:
    nodes = [
        _node("null", "a"),  # 0
        _node("null", "b"),  # 1
        _node("null", "c"),  # 2
        _node("add", "x", 1, 0),  # 3
        _node("mul", "y", 3, 1, control_deps=[2]),  # 4
    ]
    assert post_order(nodes, [4]) == [1, 0, 3, 2, 4]
    assert post_order(nodes, [3, 4]) == [1, 0, 3, 2, 4]
    assert post_order(nodes, [0]) == [0]


def test_rebuild_drops_unreached_nodes_and_recomputes_indices() -> None:
    graph = {
        "nodes": [
            _node("null", "data"),  # 0
            _node("null", "label"),  # 1
            _node("null", "w", attrs={"lr_mult": "2"}),  # 2
            _node("BatchNorm", "bn", 0, 2),  # 3, three outputs
            _node("Loss", "loss", 3, 1),  # 4
        ],
        "arg_nodes": [0, 1, 2],
        "node_row_ptr": [0, 1, 2, 3, 6, 7],
        "heads": [[4, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10300]},
    }
    original = copy.deepcopy(graph)
    new_head = _node("Activation", "act", 3, attrs={"act_type": "relu"})
    result = rebuild(graph, [new_head], [[5, 0, 0]])
    assert graph == original  # not modified
    rebuilt = result.graph
    assert [n["name"] for n in rebuilt["nodes"]] == ["data", "w", "bn", "act"]
    assert rebuilt["nodes"][2]["inputs"] == [[0, 0, 0], [1, 0, 0]]
    assert rebuilt["nodes"][3]["inputs"] == [[2, 0, 0]]
    assert rebuilt["nodes"][1]["attrs"] == {"lr_mult": "2"}
    assert rebuilt["arg_nodes"] == [0, 1]
    assert rebuilt["node_row_ptr"] == [0, 1, 2, 5, 6]
    assert rebuilt["heads"] == [[3, 0, 0]]
    assert rebuilt["attrs"] == {"mxnet_version": ["int", 10300]}
    assert list(rebuilt) == ["nodes", "arg_nodes", "node_row_ptr", "heads", "attrs"]
    assert result.removed_nodes == 2  # label and loss


def test_rebuild_keeps_a_graph_without_node_row_ptr_without_one() -> None:
    graph = {"nodes": [_node("null", "data"), _node("relu", "r", 0)], "arg_nodes": [0], "heads": [[1, 0, 0]]}
    rebuilt = rebuild(graph, [], [[1, 0, 0]]).graph
    assert "node_row_ptr" not in rebuilt
    assert rebuilt["nodes"] == graph["nodes"]


def test_rebuild_remaps_control_deps_and_keeps_output_index() -> None:
    graph = {
        "nodes": [
            _node("null", "unused"),
            _node("null", "a"),
            _node("split", "s", 1),
            _node("relu", "r", 2, control_deps=[1]),
        ],
        "heads": [[3, 0, 0]],
    }
    graph["nodes"][3]["inputs"] = [[2, 1, 0]]
    rebuilt = rebuild(graph, [], [[3, 0, 0]]).graph
    assert [n["name"] for n in rebuilt["nodes"]] == ["a", "s", "r"]
    assert rebuilt["nodes"][2]["inputs"] == [[1, 1, 0]]
    assert rebuilt["nodes"][2]["control_deps"] == [0]
