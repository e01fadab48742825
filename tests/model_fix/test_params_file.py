"""Tests for model_fix.params_file: the pure-Python reader of MXNet .params key lists."""

from __future__ import annotations

import struct
import time
import tracemalloc
from pathlib import Path

import pytest

from model_fix.errors import CorruptParamsError
from model_fix.limits import MAX_PARAMS_ARRAYS, MAX_PARAMS_KEY_BYTES
from model_fix.params_file import V1_MAGIC, read_params_index, read_params_keys

# Written by mxnet 1.9.1's nd.save (see the module docstring of conftest.py):
# {"arg:w": ones((3,4,2,2)), "aux:m": zeros((5,), float16), "arg:i": array([1,2], int64),
#  "arg:rs": row_sparse (6,3) with 2 rows, "arg:csr": csr (2,3) with 2 values, "arg:u8": uint8 (3,)}
MXNET_V2 = bytes.fromhex(
    "120100000000000000000000000000000600000000000000c9fa93f90000000004000000030000000000000004000000"
    "00000000020000000000000002000000000000000100000000000000000000000000803f0000803f0000803f0000803f"
    "0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f"
    "0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f"
    "0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803f"
    "0000803f0000803f0000803f0000803f0000803f0000803f0000803f0000803fc9fa93f9000000000100000005000000"
    "0000000001000000000000000200000000000000000000000000c9fa93f9000000000100000002000000000000000100"
    "0000000000000600000001000000000000000200000000000000c9fa93f9010000000200000002000000000000000300"
    "000000000000020000000600000000000000030000000000000001000000000000000100000006000000010000000200"
    "000000000000000000000000f03f000000000000f03f000000000000f03f000000000000f03f000000000000f03f0000"
    "00000000f03f00000000000000000400000000000000c9fa93f902000000010000000200000000000000020000000200"
    "000000000000030000000000000001000000000000000100000006000000010000000300000000000000060000000100"
    "00000200000000000000000000000000f03f000000000000004000000000000000000100000000000000020000000000"
    "000000000000000000000200000000000000c9fa93f90000000001000000030000000000000001000000000000000300"
    "0000010203060000000000000005000000000000006172673a7705000000000000006175783a6d050000000000000061"
    "72673a6906000000000000006172673a727307000000000000006172673a63737206000000000000006172673a7538"
)
# Written under mx.util.np_shape(True) (v3 arrays): a scalar, a (0, 4) and a (2, 2) array.
MXNET_V3 = bytes.fromhex(
    "120100000000000000000000000000000300000000000000cafa93f90000000000000000010000000000000000000000"
    "00004040cafa93f9000000000200000000000000000000000400000000000000010000000000000000000000cafa93f9"
    "0000000002000000020000000000000002000000000000000100000000000000000000000000803f0000803f0000803f"
    "0000803f030000000000000005000000000000006172673a7305000000000000006172673a7a05000000000000006172"
    "673a78"
)


def _write(tmp_path: Path, data: bytes, name: str = "m-0000.params") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reads_keys_shapes_and_dtypes_of_a_file_mxnet_wrote(tmp_path: Path) -> None:
    entries = read_params_index(_write(tmp_path, MXNET_V2))
    assert [(e.key, e.shape, e.dtype) for e in entries] == [
        ("arg:w", (3, 4, 2, 2), "float32"),
        ("aux:m", (5,), "float16"),
        ("arg:i", (2,), "int64"),
        ("arg:rs", (6, 3), "float64"),
        ("arg:csr", (2, 3), "float64"),
        ("arg:u8", (3,), "uint8"),
    ]
    first = entries[0]
    assert MXNET_V2[first.offset : first.offset + first.nbytes] == struct.pack("<f", 1.0) * 48
    assert [(e.kind, e.name) for e in entries[:2]] == [("arg", "w"), ("aux", "m")]


def test_reads_numpy_semantics_v3_arrays(tmp_path: Path) -> None:
    entries = read_params_index(_write(tmp_path, MXNET_V3))
    assert [(e.key, e.shape, e.nbytes) for e in entries] == [
        ("arg:s", (), 4),
        ("arg:z", (0, 4), 0),
        ("arg:x", (2, 2), 16),
    ]
    scalar = entries[0]
    assert MXNET_V3[scalar.offset : scalar.offset + 4] == struct.pack("<f", 3.0)


def test_read_params_keys_returns_keys_in_file_order(tmp_path: Path, make_params) -> None:
    path = _write(tmp_path, make_params([("arg:b", (2,)), ("aux:a", (1, 3))]))
    assert read_params_keys(path) == ["arg:b", "aux:a"]


def _legacy_file(array: bytes, key: str = "arg:x") -> bytes:
    raw = key.encode()
    return struct.pack("<QQQ", 0x112, 0, 1) + array + struct.pack("<QQ", 1, len(raw)) + raw


def test_reads_v1_and_legacy_arrays(tmp_path: Path) -> None:
    v1 = struct.pack("<Iiqq", V1_MAGIC, 2, 2, 3) + struct.pack("<iii", 1, 0, 0) + bytes(24)
    assert read_params_index(_write(tmp_path, _legacy_file(v1)))[0].shape == (2, 3)
    # Before v1 the leading uint32 was ndim itself, followed by uint32 dims.
    legacy = struct.pack("<III", 2, 4, 5) + struct.pack("<iii", 1, 0, 1) + bytes(4 * 5 * 8)
    entry = read_params_index(_write(tmp_path, _legacy_file(legacy), "l.params"))[0]
    assert (entry.shape, entry.dtype, entry.nbytes) == ((4, 5), "float64", 160)


def test_an_empty_array_has_no_context_or_data(tmp_path: Path) -> None:
    empty = struct.pack("<Iii", 0xF993FAC9, 0, 0)
    entry = read_params_index(_write(tmp_path, _legacy_file(empty)))[0]
    assert (entry.shape, entry.nbytes) == (None, 0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-3], "truncated"),
        (lambda b: b[:100], "needs"),
        (lambda b: struct.pack("<Q", 0x113) + b[8:], "header magic is 0x113"),
        (lambda b: b[:24] + struct.pack("<I", 0xDEADBEEF) + b[28:], "unknown NDArray magic 0xDEADBEEF"),
        (lambda b: b + b"junk", "4 unexpected bytes"),
        (lambda b: b[:16] + struct.pack("<Q", 1 << 40) + b[24:], "claims"),
        (lambda b: b"", "truncated at byte 0"),
    ],
)
def test_corrupt_files_are_reported_with_the_file_name(tmp_path: Path, make_params, mutate, message) -> None:
    path = _write(tmp_path, mutate(make_params([("arg:a", (4, 4)), ("arg:b", (2,))])))
    with pytest.raises(CorruptParamsError, match=message) as info:
        read_params_index(path)
    assert str(path) in str(info.value)


def test_unknown_dtype_and_storage_type_are_reported(tmp_path: Path) -> None:
    bad_dtype = struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 2) + struct.pack("<iii", 1, 0, 99) + bytes(8)
    with pytest.raises(CorruptParamsError, match="unknown dtype flag 99"):
        read_params_index(_write(tmp_path, _legacy_file(bad_dtype)))
    bad_stype = struct.pack("<Iii", 0xF993FAC9, 7, 0)
    with pytest.raises(CorruptParamsError, match="unknown storage type 7"):
        read_params_index(_write(tmp_path, _legacy_file(bad_stype), "s.params"))


def test_key_count_must_match_and_names_must_exist(tmp_path: Path) -> None:
    array = struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 2) + struct.pack("<iii", 1, 0, 0) + bytes(8)
    body = struct.pack("<QQQ", 0x112, 0, 1) + array
    with pytest.raises(CorruptParamsError, match="have no names"):
        read_params_index(_write(tmp_path, body + struct.pack("<Q", 0)))
    two_keys = body + struct.pack("<QQ", 2, 5) + b"arg:a" + struct.pack("<Q", 5) + b"arg:b"
    with pytest.raises(CorruptParamsError, match="2 keys for 1 arrays"):
        read_params_index(_write(tmp_path, two_keys, "k.params"))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CorruptParamsError, match="not found"):
        read_params_index(tmp_path / "absent.params")


def test_memory_stays_flat_for_large_tensors(tmp_path: Path) -> None:
    """A 1 GiB tensor (a sparse file on disk) is skipped with a seek, never read."""
    path = tmp_path / "big.params"
    header = struct.pack("<QQQ", 0x112, 0, 1) + struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 1 << 28)
    header += struct.pack("<iii", 1, 0, 0)
    with path.open("wb") as stream:
        stream.write(header)
        stream.seek(4 << 28, 1)
        stream.write(struct.pack("<QQ", 1, 5) + b"arg:w")
    tracemalloc.start()
    try:
        entries = read_params_index(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert entries[0].nbytes == 1 << 30
    assert peak < 1 << 20


def _claiming(path: Path, count: int, data_bytes: int) -> Path:
    """A params file whose header claims ``count`` arrays, followed by ``data_bytes`` of zeros (a hole).

    Zeros read as empty legacy arrays, 4 bytes each: the old reader parsed them all (25 million:
    2.9 GB of memory and minutes) before finding there are no keys.
    """
    with path.open("wb") as stream:
        stream.write(struct.pack("<QQQ", 0x112, 0, count))
        stream.truncate(24 + data_bytes + 8)  # sparse: nothing of that size is written
    return path


def test_a_declared_array_count_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = _claiming(tmp_path / "m-0000.params", 25_000_000, 100_000_000)
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(
            CorruptParamsError,
            match=r"m-0000.params: not a valid MXNet .params file: claims 25000000 arrays; "
            r"at most 16384 are accepted",
        ):
            read_params_index(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2
    assert peak < 1 << 20


def test_a_declared_array_count_must_fit_the_bytes_left(tmp_path: Path) -> None:
    """Each array takes at least 12 bytes (a record and its key's length), before any is parsed."""
    path = _claiming(tmp_path / "m-0000.params", MAX_PARAMS_ARRAYS, 12 * MAX_PARAMS_ARRAYS - 1)
    with pytest.raises(
        CorruptParamsError,
        match=rf"claims {MAX_PARAMS_ARRAYS} arrays, but its {12 * MAX_PARAMS_ARRAYS - 1} remaining bytes "
        rf"hold at most {MAX_PARAMS_ARRAYS - 1} \(each takes at least 12 bytes",
    ):
        read_params_index(path)
    # At the limit, with the bytes to back it, the file is parsed (and fails later, on its keys).
    path = _claiming(tmp_path / "n-0000.params", MAX_PARAMS_ARRAYS, 12 * MAX_PARAMS_ARRAYS)
    with pytest.raises(CorruptParamsError, match="have no names"):
        read_params_index(path)


def test_a_key_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    key = "arg:" + "w" * (MAX_PARAMS_KEY_BYTES - 3)
    array = struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 2) + struct.pack("<iii", 1, 0, 0) + bytes(8)
    with pytest.raises(
        CorruptParamsError, match=f"key 0 claims {len(key)} bytes; a key may have at most 1024"
    ):
        read_params_index(_write(tmp_path, _legacy_file(array, key)))
    assert read_params_keys(_write(tmp_path, _legacy_file(array, key[:-1]), "ok.params")) == [key[:-1]]


def test_data_larger_than_the_bytes_left_is_refused_before_skipping(tmp_path: Path) -> None:
    """A shape whose size times the item size is over what the file holds (here 2**60 float64s)."""
    huge = struct.pack("<Iiiqq", 0xF993FAC9, 0, 2, 1 << 30, 1 << 30) + struct.pack("<iii", 1, 0, 1)
    with pytest.raises(CorruptParamsError, match=r"array 0 data needs 9223372036854775808 bytes at byte \d+"):
        read_params_index(_write(tmp_path, _legacy_file(huge)))
