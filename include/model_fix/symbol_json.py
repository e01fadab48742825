"""Read, check and write MXNet symbol JSON (``<prefix>-symbol.json``).

The file holds ``nodes`` (each ``op``, ``name``, optional ``attrs``, ``inputs`` as
``[node_id, output_index, version]`` entries that point at earlier nodes), ``arg_nodes`` (indices
of the ``"null"`` variable nodes), ``node_row_ptr`` (prefix sums of each node's output count),
``heads`` (the graph outputs) and graph ``attrs`` such as ``mxnet_version``.

:func:`dumps_symbol` writes the layout of MXNet's own ``Symbol.tojson()`` (dmlc's JSONWriter:
two-space indent, ``", "`` before each line break, attribute keys sorted, short lists of numbers
on one line), so a graph MXNet saved round-trips byte for byte. The standard ``json`` module
cannot produce that layout, hence this small writer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_fix.errors import CorruptSymbolError
from model_fix.limits import MAX_SYMBOL_BYTES, loads_bounded_json, read_capped_text, size_in_words

Graph = dict[str, Any]

#: Node keys in the order MXNet (nnvm's JSONNode::Save) writes them.
_NODE_KEY_ORDER = ("op", "name", "attrs", "attr", "param", "inputs", "control_deps", "subgraphs")


def load_symbol(path: str | Path) -> Graph:
    """Load and structurally check an MXNet symbol JSON file.

    Raises :class:`CorruptSymbolError` naming the file (and line and column for bad JSON).
    """
    path = Path(path)
    return parse_symbol(read_symbol_text(path), source=str(path))


def read_symbol_text(path: str | Path) -> str:
    """The text of a symbol file; :class:`CorruptSymbolError` if missing, not UTF-8 or too large.

    A file over :data:`~model_fix.limits.MAX_SYMBOL_BYTES` is refused before it is read.
    """
    path = Path(path)
    try:
        return read_capped_text(path, MAX_SYMBOL_BYTES, "symbol file", CorruptSymbolError)
    except FileNotFoundError as exc:
        raise CorruptSymbolError(f"{path}: symbol file not found") from exc


def parse_symbol(text: str, source: str = "<symbol>") -> Graph:
    """Parse symbol JSON text and check its structure; ``source`` names it in errors.

    Text over :data:`~model_fix.limits.MAX_SYMBOL_BYTES` characters, and JSON nested more than
    :data:`~model_fix.limits.MAX_JSON_DEPTH` levels, are refused with :class:`CorruptSymbolError`.
    """
    if len(text) > MAX_SYMBOL_BYTES:
        raise CorruptSymbolError(
            f"{source}: {len(text)} characters, more than the {size_in_words(MAX_SYMBOL_BYTES)} "
            "a symbol file may have"
        )
    graph = loads_bounded_json(text, source, CorruptSymbolError)
    validate_graph(graph, source)
    return graph


def _bad(source: str, what: str) -> CorruptSymbolError:
    return CorruptSymbolError(f"{source}: not an MXNet symbol graph: {what}")


def _check_entry(entry: Any, limit: int, source: str, where: str) -> None:
    if (
        not isinstance(entry, list)
        or not 2 <= len(entry) <= 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry)
    ):
        raise _bad(source, f"{where}: entry {entry!r} is not [node_id, output_index, version]")
    if entry[0] >= limit:
        raise _bad(source, f"{where}: entry {entry!r} points at node {entry[0]}, not an earlier node")


def validate_graph(graph: Any, source: str = "<symbol>") -> None:
    """Check the parts of the symbol format the fix relies on; raise :class:`CorruptSymbolError`."""
    if not isinstance(graph, dict):
        raise _bad(source, f"top level is {type(graph).__name__}, expected an object")
    nodes = graph.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise _bad(source, "'nodes' is missing or empty")
    for index, node in enumerate(nodes):
        where = f"node {index}"
        if not isinstance(node, dict):
            raise _bad(source, f"{where} is not an object")
        if not isinstance(node.get("op"), str) or not isinstance(node.get("name"), str):
            raise _bad(source, f"{where} lacks a string 'op' or 'name'")
        where = f"node {index} ({node['name']!r})"
        inputs = node.get("inputs")
        if not isinstance(inputs, list):
            raise _bad(source, f"{where}: 'inputs' is missing or not a list")
        for entry in inputs:
            _check_entry(entry, index, source, where)
        for dep in node.get("control_deps", []):
            if not isinstance(dep, int) or not 0 <= dep < index:
                raise _bad(source, f"{where}: control dependency {dep!r} is not an earlier node")
        attrs = node_attrs(node)
        if not isinstance(attrs, dict) or not all(isinstance(v, str) for v in attrs.values()):
            raise _bad(source, f"{where}: 'attrs' is not an object of strings")
    heads = graph.get("heads")
    if not isinstance(heads, list) or not heads:
        raise _bad(source, "'heads' is missing or empty")
    for entry in heads:
        _check_entry(entry, len(nodes), source, "heads")
    row_ptr = graph.get("node_row_ptr")
    if row_ptr is not None and (
        not isinstance(row_ptr, list)
        or len(row_ptr) != len(nodes) + 1
        or any(not isinstance(v, int) for v in row_ptr)
        or any(b <= a for a, b in itertools.pairwise(row_ptr))
    ):
        raise _bad(source, f"'node_row_ptr' is not {len(nodes) + 1} increasing integers")


def node_attrs(node: Mapping[str, Any]) -> dict[str, str]:
    """The node's attribute dictionary (``attrs``; ``attr``/``param`` in pre-1.0 files), or {}."""
    for key in ("attrs", "attr", "param"):
        if key in node:
            return node[key]
    return {}


def output_counts(graph: Graph) -> list[int]:
    """Number of outputs of each node, from ``node_row_ptr`` (1 per node when it is absent)."""
    row_ptr = graph.get("node_row_ptr")
    if row_ptr is None:
        return [1] * len(graph["nodes"])
    return [b - a for a, b in itertools.pairwise(row_ptr)]


class _Writer:
    """A port of dmlc::JSONWriter's layout rules (the writer MXNet saves symbols with)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.multi_line: list[bool] = []
        self.counts: list[int] = []

    def _separator(self) -> None:
        if not self.multi_line or self.multi_line[-1]:
            self.parts.append("\n" + " " * (2 * len(self.multi_line)))

    def _begin(self, bracket: str, multi_line: bool) -> None:
        self.parts.append(bracket)
        self.multi_line.append(multi_line)
        self.counts.append(0)

    def _end(self, bracket: str) -> None:
        newline = self.multi_line.pop()
        count = self.counts.pop()
        if newline and count:
            self._separator()
        self.parts.append(bracket)

    def key(self, key: str) -> None:
        if self.counts[-1]:
            self.parts.append(", ")
        self._separator()
        self.parts.append(f'"{key}": ')
        self.counts[-1] += 1

    def item(self) -> None:
        if self.counts[-1]:
            self.parts.append(", ")
        self.counts[-1] += 1
        self._separator()

    def string(self, value: str) -> None:
        escaped = (
            value.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("\t", "\\t")
        )
        self.parts.append(f'"{escaped}"')

    def scalar(self, value: Any) -> None:
        if isinstance(value, str):
            self.string(value)
        elif isinstance(value, bool) or value is None:
            self.parts.append(json.dumps(value))
        elif isinstance(value, int | float):
            self.parts.append(repr(value))
        elif isinstance(value, list):
            self.array(value, multi_line=False)
        elif isinstance(value, dict):
            self.mapping(value)
        else:
            raise TypeError(f"cannot write {type(value).__name__} to symbol JSON")

    def array(self, values: list[Any], multi_line: bool) -> None:
        self._begin("[", multi_line)
        for value in values:
            self.item()
            self.scalar(value)
        self._end("]")

    def entries(self, values: list[Any]) -> None:
        """A list of numbers or of node entries: on one line unless it has more than 10 items."""
        self._begin("[", len(values) > 10)
        for value in values:
            self.item()
            if isinstance(value, list):
                self.array(value, multi_line=False)
            else:
                self.scalar(value)
        self._end("]")

    def mapping(self, values: Mapping[str, Any], *, sort: bool = True) -> None:
        """A string map (std::map in MXNet): sorted keys, multi-line when it has more than one."""
        self._begin("{", len(values) > 1)
        for key in sorted(values) if sort else values:
            self.key(key)
            self.scalar(values[key])
        self._end("}")

    def node(self, node: Mapping[str, Any]) -> None:
        self._begin("{", True)
        keys = [k for k in _NODE_KEY_ORDER if k in node] + [k for k in node if k not in _NODE_KEY_ORDER]
        for key in keys:
            value = node[key]
            if key in ("attrs", "attr", "param") and not value:
                continue  # MXNet omits an empty attribute map
            if key in ("control_deps", "subgraphs") and not value:
                continue
            self.key(key)
            if key in ("attrs", "attr", "param"):
                self.mapping(value)
            elif key in ("inputs", "control_deps"):
                self.entries(value)
            elif key == "subgraphs":
                self._begin("[", True)
                for subgraph in value:
                    self.item()
                    self.graph(subgraph)
                self._end("]")
            else:
                self.scalar(value)
        self._end("}")

    def graph(self, graph: Graph) -> None:
        self._begin("{", True)
        for key, value in graph.items():
            if key == "attrs" and not value:
                continue
            self.key(key)
            if key == "nodes":
                self._begin("[", True)
                for node in value:
                    self.item()
                    self.node(node)
                self._end("]")
            elif key in ("arg_nodes", "node_row_ptr", "heads"):
                self.entries(value)
            elif key == "attrs":
                self.mapping(value)
            else:
                self.scalar(value)
        self._end("}")


def dumps_symbol(graph: Graph) -> str:
    """Serialise a graph dict in exactly the layout MXNet's ``Symbol.tojson()`` produces."""
    writer = _Writer()
    writer.graph(graph)
    return "".join(writer.parts)
