"""Fixtures for the model fix tests: the real SageMaker training graph and synthetic .params files.

The .params writer below produces MXNet's NDArray-list format (v2 arrays, as mxnet 1.x's
``nd.save`` writes them); ``test_params_file.py`` also checks the reader on files MXNet wrote.
"""

from __future__ import annotations

import functools
import gzip
import json
import resource
import shutil
import signal
import struct
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "sagemaker-model"
TRAINING_SYMBOL = FIXTURE_DIR / "model_algo_1-symbol.json"
EXAMPLE_HYPERPARAMS = FIXTURE_DIR / "hyperparams.example.json"
V2_MAGIC = 0xF993FAC9


def encode_array(shape: tuple[int, ...], dtype_flag: int = 0, itemsize: int = 4, fill: int = 0) -> bytes:
    """One dense v2 NDArray record: magic, storage type, shape, cpu context, dtype, data."""
    out = struct.pack("<Ii", V2_MAGIC, 0)
    out += struct.pack(f"<i{len(shape)}q", len(shape), *shape)
    if not shape:
        return out
    out += struct.pack("<iii", 1, 0, dtype_flag)
    count = 1
    for dim in shape:
        count *= dim
    return out + bytes([fill & 0xFF]) * (count * itemsize)


def encode_params(records: Iterable[tuple[str, bytes]]) -> bytes:
    """An NDArray-list file from (key, encoded array) pairs."""
    records = list(records)
    parts = [struct.pack("<QQQ", 0x112, 0, len(records))]
    parts += [data for _, data in records]
    parts.append(struct.pack("<Q", len(records)))
    for key, _ in records:
        raw = key.encode()
        parts += [struct.pack("<Q", len(raw)), raw]
    return b"".join(parts)


@functools.cache
def _gzip_of_zeros() -> bytes:
    """16 MiB of zeros as one gzip member (about 16 KB): repeated, it expands to any size."""
    return gzip.compress(bytes(16 << 20), compresslevel=9, mtime=0)


def write_gzip_bomb(destination: Path, members: Iterable[tuple[str, bytes | int]]) -> Path:
    """A tar.gz of ``(name, data)`` members, where an ``int`` is that many zero bytes.

    Zeros are written as repeated gzip members of one compressed block (gzip readers join
    concatenated members), so a member of gigabytes costs a few megabytes and milliseconds to
    build, and nothing of its size is ever held or written.
    """
    block = 16 << 20
    with destination.open("wb") as out:
        pending = b""
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            pending += info.tobuf(format=tarfile.GNU_FORMAT)
            if isinstance(data, bytes):
                pending += data
            else:
                out.write(gzip.compress(pending, mtime=0))
                full, rest = divmod(data, block)
                out.write(_gzip_of_zeros() * full)
                pending = bytes(rest)
            pending += bytes(-info.size % 512)
        out.write(gzip.compress(pending + bytes(1024), mtime=0))  # two zero blocks end the archive
    return destination


def tar_members(folder: Path) -> list[tuple[str, bytes]]:
    """The files of ``folder`` as ``(name, data)`` members, sorted."""
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """No file written by this process may grow past ``nbytes`` (RLIMIT_FSIZE) while the block runs.

    A write past it fails with OSError (EFBIG) instead of the default SIGXFSZ: a test of a
    decompression bomb then fails fast, whatever the code under test does, and never fills the disk.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def graph_param_shapes(graph: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """``arg:``/``aux:`` key -> a small shape consistent with the graph (conv weights: num_filter first)."""
    from model_fix.ssd import graph_arguments

    args, aux = graph_arguments(graph)
    shapes: dict[str, tuple[int, ...]] = {f"arg:{name}": (2,) for name in args}
    shapes.update({f"aux:{name}": (2,) for name in aux})
    nodes = graph["nodes"]
    for node in nodes:
        if node["op"] == "Convolution":
            filters = int(node["attrs"]["num_filter"])
            weight = nodes[node["inputs"][1][0]]["name"]
            shapes[f"arg:{weight}"] = (filters, 1, 1, 1)
            if len(node["inputs"]) > 2:
                shapes[f"arg:{nodes[node['inputs'][2][0]]['name']}"] = (filters,)
    return shapes


def write_params_for(
    graph: dict[str, Any], path: Path, *, drop: Iterable[str] = (), extra: dict | None = None
) -> Path:
    """Write a .params file matching ``graph`` (minus ``drop`` keys, plus ``extra`` key -> shape)."""
    shapes = graph_param_shapes(graph)
    for key in drop:
        shapes.pop(key)
    shapes.update(extra or {})
    records = [(key, encode_array(shape, fill=i)) for i, (key, shape) in enumerate(sorted(shapes.items()))]
    path.write_bytes(encode_params(records))
    return path


@pytest.fixture(scope="session")
def training_graph() -> dict[str, Any]:
    """The real SageMaker resnet-50 SSD training graph, parsed."""
    return json.loads(TRAINING_SYMBOL.read_text())


@pytest.fixture
def model_dir(tmp_path: Path, training_graph: dict[str, Any]) -> Path:
    """A SageMaker model folder: the real symbol, matching synthetic params, consistent hyperparams."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(TRAINING_SYMBOL, folder / "model_algo_1-symbol.json")
    write_params_for(training_graph, folder / "model_algo_1-0000.params")
    hyperparams = json.loads(EXAMPLE_HYPERPARAMS.read_text())
    hyperparams["num_classes"] = "1"  # the fixture graph predicts one class
    (folder / "hyperparams.json").write_text(json.dumps(hyperparams))
    return folder


@pytest.fixture
def write_params() -> Callable[..., Path]:
    """The synthetic .params writer, for tests that need a variant."""
    return write_params_for


@pytest.fixture
def make_params() -> Callable[..., bytes]:
    """Encode (key, shape) pairs as an NDArray-list file."""

    def make(items: Iterable[tuple[str, tuple[int, ...]]]) -> bytes:
        return encode_params((key, encode_array(shape)) for key, shape in items)

    return make
