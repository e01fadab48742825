"""Read the key list (and shapes) of an MXNet ``.params`` file without loading its weights.

Hand-written because no maintained pure-Python reader of this format exists (MXNet's own loader
needs mxnet, and reads every tensor into memory). The format is MXNet's NDArray list
(``NDArray::Save(stream, data, names)`` in src/ndarray/ndarray.cc), little endian::

    uint64 magic 0x112, uint64 reserved, uint64 count, count x NDArray,
    uint64 key count, key count x (uint64 length, bytes)   # "arg:name" / "aux:name"

and each NDArray, by its leading uint32::

    0xF993FAC9 (v2) / 0xF993FACA (v3, numpy shape semantics):
        int32 storage type (0 dense, 1 row_sparse, 2 csr); storage shape if sparse; shape;
        [unless the shape is empty:] int32 dev_type, int32 dev_id, int32 dtype flag,
        per aux array (int32 dtype, shape); data; aux data
    0xF993FAC8 (v1): shape; [unless empty:] context, dtype flag, data
    anything else (legacy): that uint32 is ndim, then ndim uint32 dims; context, dtype, data

A shape is int32 ndim then ndim int64 dims. Tensor data is skipped with ``seek``, so memory
stays flat whatever the file's size. Work is bounded by what the file holds: the declared array
count is checked against :data:`~model_fix.limits.MAX_PARAMS_ARRAYS` and against the bytes left
(each array takes at least :data:`~model_fix.limits.MIN_PARAMS_ARRAY_BYTES`) before any array is
read, and each array's data (shape times item size) against the bytes left before it is skipped.
"""

from __future__ import annotations

import struct
from math import prod
from pathlib import Path
from typing import BinaryIO, NamedTuple

from model_fix.errors import CorruptParamsError
from model_fix.limits import MAX_PARAMS_ARRAYS, MAX_PARAMS_KEY_BYTES, MIN_PARAMS_ARRAY_BYTES

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
#: mshadow type flag -> (name, bytes per element).
DTYPES = {
    0: ("float32", 4),
    1: ("float64", 8),
    2: ("float16", 2),
    3: ("uint8", 1),
    4: ("int32", 4),
    5: ("int8", 1),
    6: ("int64", 8),
    7: ("bool", 1),
    8: ("int16", 2),
    9: ("uint16", 2),
    10: ("uint32", 4),
    11: ("uint64", 8),
    12: ("bfloat16", 2),
}
#: storage type -> number of auxiliary arrays (row_sparse: indices; csr: indptr, indices).
AUX_ARRAYS = {0: 0, 1: 1, 2: 2}
_MAX_NDIM = 32


class ParamEntry(NamedTuple):
    """One stored tensor: its key (``arg:``/``aux:`` prefixed), shape, dtype and data location."""

    key: str
    shape: tuple[int, ...] | None
    dtype: str | None
    offset: int
    nbytes: int

    @property
    def kind(self) -> str:
        """``"arg"`` or ``"aux"`` (or ``""`` for a key without either prefix)."""
        prefix, sep, _ = self.key.partition(":")
        return prefix if sep and prefix in ("arg", "aux") else ""

    @property
    def name(self) -> str:
        """The key without its ``arg:``/``aux:`` prefix."""
        return self.key.partition(":")[2] if self.kind else self.key


class _Array(NamedTuple):
    shape: tuple[int, ...] | None
    dtype: str | None
    offset: int
    nbytes: int


class _Reader:
    def __init__(self, stream: BinaryIO, path: Path, size: int) -> None:
        self.stream = stream
        self.path = path
        self.size = size

    def fail(self, what: str) -> CorruptParamsError:
        return CorruptParamsError(f"{self.path}: not a valid MXNet .params file: {what}")

    def read(self, fmt: str, what: str) -> tuple[int, ...]:
        length = struct.calcsize(fmt)
        offset = self.stream.tell()
        data = self.stream.read(length)
        if len(data) != length:
            raise self.fail(f"truncated at byte {offset} while reading {what}")
        return struct.unpack(fmt, data)

    def skip(self, nbytes: int, what: str) -> int:
        offset = self.stream.tell()
        if offset + nbytes > self.size:
            raise self.fail(f"{what} needs {nbytes} bytes at byte {offset}, file has {self.size - offset}")
        self.stream.seek(nbytes, 1)
        return offset

    def shape(self, what: str, int64_dims: bool = True) -> tuple[int, ...] | None:
        (ndim,) = self.read("<i", f"{what} ndim")
        if ndim < 0:
            return None  # unknown shape (numpy semantics)
        if ndim > _MAX_NDIM:
            raise self.fail(f"{what} has {ndim} dimensions")
        dims = self.read(f"<{ndim}{'q' if int64_dims else 'I'}", f"{what} dims")
        if any(d < 0 for d in dims):
            return None
        return tuple(dims)

    def dtype(self, what: str) -> tuple[str, int]:
        (flag,) = self.read("<i", f"{what} dtype flag")
        if flag not in DTYPES:
            raise self.fail(f"{what} has unknown dtype flag {flag}")
        return DTYPES[flag]

    def array(self, index: int) -> _Array:
        what = f"array {index}"
        start = self.stream.tell()
        (magic,) = self.read("<I", f"{what} magic")
        if magic in (V2_MAGIC, V3_MAGIC):
            (stype,) = self.read("<i", f"{what} storage type")
            if stype not in AUX_ARRAYS:
                raise self.fail(f"{what} (byte {start}) has unknown storage type {stype}")
            aux_count = AUX_ARRAYS[stype]
            storage_shape = self.shape(f"{what} storage shape") if aux_count else None
            shape = self.shape(f"{what} shape")
            if shape is None or (magic == V2_MAGIC and len(shape) == 0):
                return _Array(None, None, self.stream.tell(), 0)
            self.read("<ii", f"{what} context")
            dtype, itemsize = self.dtype(what)
            aux_bytes = []
            for i in range(aux_count):
                _, aux_itemsize = self.dtype(f"{what} aux {i}")
                aux_shape = self.shape(f"{what} aux {i} shape") or ()
                aux_bytes.append(aux_itemsize * prod(aux_shape))
            data_shape = storage_shape if aux_count else shape
            nbytes = itemsize * prod(data_shape or ())
            offset = self.skip(nbytes, f"{what} data")
            for i, size in enumerate(aux_bytes):
                self.skip(size, f"{what} aux {i} data")
            return _Array(shape, dtype, offset, nbytes)
        if magic == V1_MAGIC:
            shape = self.shape(f"{what} shape")
        elif 0 < magic <= _MAX_NDIM:  # legacy: the "magic" is ndim, then uint32 dims
            shape = tuple(self.read(f"<{magic}I", f"{what} legacy dims"))
        elif magic == 0:
            return _Array(None, None, self.stream.tell(), 0)
        else:
            raise self.fail(f"{what} (byte {start}) has unknown NDArray magic 0x{magic:08X}")
        if not shape:
            return _Array(None, None, self.stream.tell(), 0)
        self.read("<ii", f"{what} context")
        dtype, itemsize = self.dtype(what)
        nbytes = itemsize * prod(shape)
        offset = self.skip(nbytes, f"{what} data")
        return _Array(shape, dtype, offset, nbytes)


def read_params_index(path: str | Path) -> list[ParamEntry]:
    """Every tensor of a ``.params`` file: key, shape, dtype, data offset and size (data not read).

    Raises :class:`CorruptParamsError` naming the file and the byte where parsing failed.
    """
    path = Path(path)
    try:
        stream = path.open("rb")
    except FileNotFoundError as exc:
        raise CorruptParamsError(f"{path}: params file not found") from exc
    with stream:
        size = path.stat().st_size
        reader = _Reader(stream, path, size)
        magic, _reserved = reader.read("<QQ", "header")
        if magic != LIST_MAGIC:
            raise reader.fail(f"header magic is 0x{magic:X}, expected 0x{LIST_MAGIC:X}")
        (count,) = reader.read("<Q", "array count")
        if count > MAX_PARAMS_ARRAYS:
            raise reader.fail(
                f"claims {count} arrays; at most {MAX_PARAMS_ARRAYS} are accepted (a resnet-50 SSD has 293)"
            )
        left = size - stream.tell() - 8  # the key count follows the arrays
        if count * MIN_PARAMS_ARRAY_BYTES > left:
            raise reader.fail(
                f"claims {count} arrays, but its {max(left, 0)} remaining bytes hold at most "
                f"{max(left, 0) // MIN_PARAMS_ARRAY_BYTES} (each takes at least "
                f"{MIN_PARAMS_ARRAY_BYTES} bytes: its record and its key's length)"
            )
        arrays = [reader.array(i) for i in range(count)]
        (key_count,) = reader.read("<Q", "key count")
        if key_count == 0 and count:
            raise reader.fail(f"its {count} arrays have no names (not a checkpoint: no arg:/aux: keys)")
        if key_count != count:
            raise reader.fail(f"{key_count} keys for {count} arrays")
        keys = []
        for i in range(key_count):
            (length,) = reader.read("<Q", f"key {i} length")
            if length > MAX_PARAMS_KEY_BYTES:
                raise reader.fail(
                    f"key {i} claims {length} bytes; a key may have at most {MAX_PARAMS_KEY_BYTES}"
                )
            raw = stream.read(length)
            if len(raw) != length:
                raise reader.fail(f"truncated in key {i}")
            try:
                keys.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise reader.fail(f"key {i} is not UTF-8") from exc
        trailing = size - stream.tell()
        if trailing:
            raise reader.fail(f"{trailing} unexpected bytes after the key list")
    return [
        ParamEntry(key=key, shape=a.shape, dtype=a.dtype, offset=a.offset, nbytes=a.nbytes)
        for key, a in zip(keys, arrays, strict=True)
    ]


def read_params_keys(path: str | Path) -> list[str]:
    """The keys (``arg:<name>`` / ``aux:<name>``) of a ``.params`` file, in file order."""
    return [entry.key for entry in read_params_index(path)]
