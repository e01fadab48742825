"""Tests for model_fix.limits: the named bounds and the bounded readers of JSON inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_fix.errors import CorruptSymbolError, HyperparamsError
from model_fix.limits import (
    MAX_JSON_DEPTH,
    check_json_depth,
    loads_bounded_json,
    read_capped_text,
    size_in_words,
)


def test_sizes_are_written_in_the_largest_whole_unit() -> None:
    assert [size_in_words(n) for n in (4 << 20, 1 << 30, 3 << 10, 1000, (1 << 20) + 1)] == [
        "4 MiB",
        "1 GiB",
        "3 KiB",
        "1000 bytes",
        "1048577 bytes",
    ]


def test_read_capped_text_reads_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b"x" * 10)
    assert read_capped_text(path, 10, "test file", HyperparamsError) == "x" * 10
    with pytest.raises(
        HyperparamsError, match=r"x.json: 10 bytes, more than the 9 bytes a test file may have"
    ):
        read_capped_text(path, 9, "test file", HyperparamsError)
    with pytest.raises(FileNotFoundError):
        read_capped_text(tmp_path / "absent.json", 9, "test file", HyperparamsError)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_file_whose_size_says_nothing_is_still_read_no_further_than_the_limit() -> None:
    """A device (or a file that grows) reports no size: at most limit + 1 bytes are read."""
    with pytest.raises(CorruptSymbolError, match="/dev/zero: over 4096 bytes, more than the 4 KiB"):
        read_capped_text(Path("/dev/zero"), 4096, "symbol file", CorruptSymbolError)


def test_loads_bounded_json_turns_every_failure_into_the_given_error() -> None:
    assert loads_bounded_json('{"a": [1]}', "s", HyperparamsError) == {"a": [1]}
    with pytest.raises(HyperparamsError, match="s: invalid JSON at line 1, column 2"):
        loads_bounded_json("{", "s", HyperparamsError)
    with pytest.raises(HyperparamsError, match="s: JSON nested too deep to parse"):
        loads_bounded_json("[" * 100_000, "s", HyperparamsError)
    with pytest.raises(HyperparamsError, match="s: JSON nested more than 64 levels deep"):
        loads_bounded_json("[" * 65 + "]" * 65, "s", HyperparamsError)


def test_check_json_depth_counts_objects_and_lists_without_recursion() -> None:
    value: object = 1
    for i in range(MAX_JSON_DEPTH):
        value = [value] if i % 2 else {"k": value}
    check_json_depth(value, "s", CorruptSymbolError)
    check_json_depth("scalar", "s", CorruptSymbolError)
    with pytest.raises(CorruptSymbolError, match="more than 64"):
        check_json_depth([value], "s", CorruptSymbolError)
    deep: list = []
    for _ in range(100_000):  # far past the recursion limit: measured all the same
        deep = [deep]
    with pytest.raises(CorruptSymbolError, match="more than 64"):
        check_json_depth(deep, "s", CorruptSymbolError)
