"""Graph surgery on symbol dicts: MXNet's node order, and rebuilding a graph from new heads.

MXNet numbers a symbol's nodes by nnvm's ``PostOrderDFSVisit`` from the graph's heads: depth
first, each node's inputs in order and then its control dependencies, a node marked visited when
it is first pushed, and emitted once all its inputs are. :func:`post_order` reproduces it, so a
rebuilt graph lists its nodes in the order MXNet would save them, and holds no node the heads do
not reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from model_fix.symbol_json import Graph, output_counts


def post_order(nodes: Sequence[dict[str, Any]], head_ids: Sequence[int]) -> list[int]:
    """Node indices in MXNet's post-order depth-first order from ``head_ids``."""
    visited: set[int] = set()
    order: list[int] = []
    for head in head_ids:
        if head in visited:
            continue
        visited.add(head)
        stack: list[list[int]] = [[head, 0]]
        while stack:
            frame = stack[-1]
            node = nodes[frame[0]]
            predecessors = [entry[0] for entry in node["inputs"]] + list(node.get("control_deps", []))
            if frame[1] == len(predecessors):
                order.append(frame[0])
                stack.pop()
                continue
            child = predecessors[frame[1]]
            frame[1] += 1
            if child not in visited:
                visited.add(child)
                stack.append([child, 0])
    return order


class Rebuilt(NamedTuple):
    """A graph rebuilt from new heads, and how many of the old nodes it dropped."""

    graph: Graph
    removed_nodes: int


def rebuild(graph: Graph, extra_nodes: Sequence[dict[str, Any]], heads: Sequence[list[int]]) -> Rebuilt:
    """Rebuild ``graph`` so that its only outputs are ``heads``.

    ``extra_nodes`` are appended after the existing nodes (their inputs use the same numbering:
    old nodes keep their index, the first extra node is ``len(graph["nodes"])``); each has one
    output. Nodes the heads do not reach are dropped, the rest are put in MXNet's post order and
    renumbered, and ``arg_nodes``, ``node_row_ptr`` and ``heads`` are recomputed. Node dicts and
    graph ``attrs`` are copied unchanged apart from their inputs. The input graph is not modified.
    """
    old_nodes = graph["nodes"]
    nodes = list(old_nodes) + list(extra_nodes)
    counts = output_counts(graph) + [1] * len(extra_nodes)
    order = post_order(nodes, [entry[0] for entry in heads])
    new_index = {old: new for new, old in enumerate(order)}

    def remap(entry: list[int]) -> list[int]:
        return [new_index[entry[0]], *entry[1:]]

    new_nodes = []
    for old in order:
        node = dict(nodes[old])
        node["inputs"] = [remap(entry) for entry in node["inputs"]]
        if node.get("control_deps"):
            node["control_deps"] = [new_index[dep] for dep in node["control_deps"]]
        new_nodes.append(node)

    row_ptr = [0]
    for old in order:
        row_ptr.append(row_ptr[-1] + counts[old])

    rebuilt: Graph = {
        "nodes": new_nodes,
        "arg_nodes": [i for i, node in enumerate(new_nodes) if node["op"] == "null"],
    }
    if "node_row_ptr" in graph:
        rebuilt["node_row_ptr"] = row_ptr
    rebuilt["heads"] = [remap(entry) for entry in heads]
    for key, value in graph.items():
        if key not in rebuilt and key not in ("nodes", "arg_nodes", "node_row_ptr", "heads"):
            rebuilt[key] = value
    kept_old = sum(1 for old in order if old < len(old_nodes))
    return Rebuilt(graph=rebuilt, removed_nodes=len(old_nodes) - kept_old)


def reachable_node_count(graph: Graph) -> int:
    """How many nodes the graph's heads reach."""
    return len(post_order(graph["nodes"], [entry[0] for entry in graph["heads"]]))
