"""Bounds on what the model fix reads, and the bounded readers of its JSON inputs.

Every limit sits far above what a real SageMaker SSD model holds, and bounds the memory, disk and
time a hostile or broken input can cost: the file's (or archive member's) size is checked before
anything is read or written, and a count is checked against the bytes that must back it before
anything is allocated for it. Measured on the SageMaker object detection models (resnet-50 and
vgg-16 bases, the only two it trains, at 300 and 512):

* ``-symbol.json``: at most 133 KB (resnet-50; vgg-16: 45 KB), nested 5 levels deep;
* ``-NNNN.params``: about 110 MB, 293 arrays (resnet-50: 193 arguments, 100 auxiliary states),
  keys under 64 bytes;
* ``hyperparams.json``: under 1 KB, an object of strings (1 level).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_fix.errors import ModelFixError

#: Largest symbol file read: 30x the largest real one. json.loads needs up to ~25x a file's size in
#: memory (a file of empty lists or objects), so the worst case stays near 100 MB.
MAX_SYMBOL_BYTES = 4 << 20
#: Largest hyperparams.json read: 1000x SageMaker's (under 1 KB).
MAX_HYPERPARAMS_BYTES = 1 << 20
#: Deepest JSON nesting accepted in the symbol and hyperparams files. Real ones nest 5 levels
#: (graph, nodes, node, inputs, entry); each control-flow subgraph adds 4. Deeper input would
#: overflow the recursion of json.loads and of the symbol writer.
MAX_JSON_DEPTH = 64
#: Most arrays a .params file may declare: over 50x the 293 of a resnet-50 SSD. Bounds the
#: index's memory (with MAX_PARAMS_KEY_BYTES: at most 16 MiB of keys) and the parsing time.
MAX_PARAMS_ARRAYS = 16_384
#: Longest .params key (``arg:<name>``) accepted: 20x the longest SSD key (51 bytes).
MAX_PARAMS_KEY_BYTES = 1024
#: Least bytes one array of a .params file takes: a 4-byte record (an empty legacy array) plus its
#: key's 8-byte length. A declared array count is checked against the bytes left before parsing.
MIN_PARAMS_ARRAY_BYTES = 4 + 8
#: Largest .params member extracted from a model archive: 9x the 110 MB of a resnet-50 SSD-512,
#: the largest model SageMaker's object detection trains. Bounds the disk an archive can fill
#: (a .params file in a folder is not bounded: it is read with seeks and copied by the kernel).
MAX_PARAMS_BYTES = 1 << 30
#: Most members an archive may hold: a SageMaker archive has 3, a repacked one 5.
MAX_ARCHIVE_MEMBERS = 64
#: Largest uncompressed size of all of an archive's members, as their headers declare it, used
#: or not: a repacked archive holds the weights twice (training and deploy), plus 64 MiB for the
#: rest. Bounds the decompression work a gzip bomb can cause (checked before the data is read).
MAX_ARCHIVE_BYTES = 2 * MAX_PARAMS_BYTES + (64 << 20)

_CONTAINERS = (dict, list)


def size_in_words(nbytes: int) -> str:
    """``4 MiB``, ``1 GiB``, ``1000 bytes``: a limit as the error messages write it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} bytes"


def read_capped_text(path: Path, limit: int, what: str, error: type[ModelFixError]) -> str:
    """The UTF-8 text of ``path``, refused with ``error`` (naming the file) if over ``limit`` bytes.

    The size is checked before reading, and no more than ``limit + 1`` bytes are ever read (a
    file that grows, or a device, cannot get past it). FileNotFoundError is left to the caller.
    """
    size = path.stat().st_size
    data = b""
    if size <= limit:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    if size > limit or len(data) > limit:
        found = f"{size} bytes" if size > limit else f"over {limit} bytes"
        raise error(f"{path}: {found}, more than the {size_in_words(limit)} a {what} may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); not a {what}") from exc


def loads_bounded_json(text: str, source: str, error: type[ModelFixError]) -> Any:
    """``json.loads(text)``; bad syntax and nesting over MAX_JSON_DEPTH become ``error`` naming ``source``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except RecursionError:
        raise error(
            f"{source}: JSON nested too deep to parse; at most {MAX_JSON_DEPTH} levels are accepted"
        ) from None
    check_json_depth(value, source, error)
    return value


def check_json_depth(value: Any, source: str, error: type[ModelFixError]) -> None:
    """Refuse (with ``error``) a parsed JSON value nested more than MAX_JSON_DEPTH levels.

    Walks the value level by level, without recursion, so any depth is measured safely.
    """
    level = [value] if isinstance(value, _CONTAINERS) else []
    for _ in range(MAX_JSON_DEPTH):
        deeper = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, _CONTAINERS):
                    deeper.append(child)
        if not deeper:
            return
        level = deeper
    raise error(f"{source}: JSON nested more than {MAX_JSON_DEPTH} levels deep (the most accepted)")
