"""Tests for model_fix.symbol_json: parsing, structural checks and MXNet's exact JSON layout."""

from __future__ import annotations

import copy
import json
import tracemalloc
from pathlib import Path

import pytest

from model_fix.errors import CorruptSymbolError
from model_fix.limits import MAX_JSON_DEPTH, MAX_SYMBOL_BYTES, check_json_depth
from model_fix.symbol_json import (
    dumps_symbol,
    load_symbol,
    node_attrs,
    output_counts,
    parse_symbol,
    read_symbol_text,
)

from .conftest import TRAINING_SYMBOL


def test_round_trips_a_sagemaker_symbol_byte_for_byte() -> None:
    text = TRAINING_SYMBOL.read_text()
    # SageMaker's file ends with a newline that MXNet's writer does not produce.
    assert dumps_symbol(load_symbol(TRAINING_SYMBOL)) + "\n" == text


def test_layout_follows_dmlc_json_writer() -> None:
    graph = {
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "null", "name": "w", "attrs": {"__init__": '["zero", {}]'}, "inputs": []},
            {
                "op": "Concat",
                "name": "c\ttab",
                "attrs": {"num_args": "11", "dim": "1"},
                "inputs": [[0, 0, 0]] * 10 + [[1, 0, 0]],
            },
        ],
        "arg_nodes": [0, 1],
        "node_row_ptr": [0, 1, 2, 3],
        "heads": [[2, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]},
    }
    text = dumps_symbol(graph)
    assert json.loads(text) == graph
    assert '"attrs": {"__init__": "[\\"zero\\", {}]"}, ' in text  # one key: one line, quotes escaped
    assert '"attrs": {\n        "dim": "1", \n        "num_args": "11"\n      }' in text  # sorted, multi-line
    assert '"name": "c\\ttab"' in text
    assert '"inputs": [\n        [0, 0, 0], ' in text  # more than 10 entries: one per line
    assert '"arg_nodes": [0, 1], \n  "node_row_ptr": [0, 1, 2, 3], \n  "heads": [[2, 0, 0]]' in text
    assert text.endswith('"attrs": {"mxnet_version": ["int", 10901]}\n}')


def test_empty_node_attrs_are_omitted() -> None:
    graph = {"nodes": [{"op": "null", "name": "data", "attrs": {}, "inputs": []}], "heads": [[0, 0, 0]]}
    assert '"attrs"' not in dumps_symbol(graph).split('"heads"')[0]


def test_corrupt_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "m-symbol.json"
    path.write_text('{\n  "nodes": [\n    {"op": "null",, }\n')
    with pytest.raises(CorruptSymbolError, match=r"m-symbol.json: invalid JSON at line 3, column 19"):
        load_symbol(path)


def test_non_utf8_and_missing_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "m-symbol.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(CorruptSymbolError, match="not UTF-8"):
        load_symbol(path)
    with pytest.raises(CorruptSymbolError, match="not found"):
        load_symbol(tmp_path / "absent-symbol.json")


def _fixture() -> dict:
    return json.loads(TRAINING_SYMBOL.read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: [], "top level is list"),
        (lambda g: {**g, "nodes": []}, "'nodes' is missing or empty"),
        (lambda g: {**g, "heads": []}, "'heads' is missing or empty"),
        (lambda g: {**g, "heads": [[9999, 0, 0]]}, "points at node 9999"),
        (lambda g: {**g, "node_row_ptr": [0, 1]}, "'node_row_ptr' is not 545"),
    ],
)
def test_structural_errors_are_reported(mutate, message) -> None:
    with pytest.raises(CorruptSymbolError, match=message):
        parse_symbol(json.dumps(mutate(_fixture())), source="x-symbol.json")


@pytest.mark.parametrize(
    ("node_change", "message"),
    [
        ({"inputs": [[5, 0, 0]]}, r"node 1 \('id'\): entry \[5, 0, 0\] points at node 5"),
        ({"inputs": [["a", 0]]}, "is not \\[node_id, output_index, version\\]"),
        ({"inputs": None}, "'inputs' is missing"),
        ({"name": 7}, "lacks a string 'op' or 'name'"),
        ({"attrs": {"k": 1}}, "'attrs' is not an object of strings"),
        ({"control_deps": [3]}, "control dependency 3"),
    ],
)
def test_bad_nodes_are_reported_by_index_and_name(node_change, message) -> None:
    graph = _fixture()
    graph["nodes"][1].update(node_change)
    with pytest.raises(CorruptSymbolError, match=message):
        parse_symbol(json.dumps(graph), source="x-symbol.json")


def test_node_attrs_reads_pre_1_0_keys() -> None:
    assert node_attrs({"op": "Convolution", "param": {"num_filter": "8"}}) == {"num_filter": "8"}
    assert node_attrs({"op": "null"}) == {}


def test_output_counts_follow_node_row_ptr() -> None:
    graph = _fixture()
    counts = output_counts(graph)
    assert counts[504] == 3  # MultiBoxTarget
    assert sum(counts) == graph["node_row_ptr"][-1]
    legacy = copy.deepcopy(graph)
    del legacy["node_row_ptr"]
    assert output_counts(legacy) == [1] * len(graph["nodes"])


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_symbol_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """The issue's 92 MB symbol file (a hole here): refused by its size, in bounded memory."""
    path = tmp_path / "m-symbol.json"
    with path.open("wb") as stream:
        stream.truncate(92_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(
            CorruptSymbolError,
            match=r"m-symbol.json: 92000000 bytes, more than the 4 MiB a symbol file may have",
        ):
            load_symbol(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    with path.open("wb") as stream:
        stream.truncate(MAX_SYMBOL_BYTES + 1)
    with pytest.raises(CorruptSymbolError, match=f"{MAX_SYMBOL_BYTES + 1} bytes, more than the 4 MiB"):
        read_symbol_text(path)
    with pytest.raises(CorruptSymbolError, match=f"x-symbol.json: {MAX_SYMBOL_BYTES + 1} characters"):
        parse_symbol(" " * (MAX_SYMBOL_BYTES + 1), source="x-symbol.json")


def test_the_real_symbol_files_are_far_under_the_limits() -> None:
    assert TRAINING_SYMBOL.stat().st_size * 30 < MAX_SYMBOL_BYTES
    check_json_depth(_fixture(), "fixture", CorruptSymbolError)


@pytest.mark.parametrize("depth", [100_000, 1_000])
def test_json_nested_too_deep_to_parse_is_a_corrupt_symbol(tmp_path: Path, depth: int) -> None:
    """json.loads' RecursionError (uncaught before) becomes a CorruptSymbolError naming the file."""
    path = tmp_path / "m-symbol.json"
    path.write_text("[" * depth + "]" * depth)
    with pytest.raises(CorruptSymbolError, match=r"m-symbol.json: JSON nested too deep to parse; at most 64"):
        load_symbol(path)


def test_nesting_over_the_limit_is_refused_even_where_json_can_parse_it() -> None:
    """900 levels parse, but the writer (and deepcopy) recurse: anything over 64 levels is refused."""
    deepest = _fixture()
    deepest["attrs"]["extra"] = _nested(MAX_JSON_DEPTH - 2)  # under the graph and its attrs: 64 in all
    assert json.loads(dumps_symbol(parse_symbol(json.dumps(deepest)))) == deepest
    for depth in (MAX_JSON_DEPTH - 1, 900):
        graph = _fixture()
        graph["attrs"]["extra"] = _nested(depth)
        with pytest.raises(CorruptSymbolError, match="x-symbol.json: JSON nested more than 64 levels deep"):
            parse_symbol(json.dumps(graph), source="x-symbol.json")
