"""Cut a listing into shards: JSON-serialisable, deterministic work units for the mapped tasks.

Pure Python (no Pillow): the Airflow planning task imports it while the DAG file's parse stays cheap.
"""

from __future__ import annotations

import math
from typing import Any

from deeplens_pipeline.images.boxes import LabelSet
from deeplens_pipeline.images.naming import normalise_prefix, output_names
from deeplens_pipeline.images.sources import Listing, SourceRoot


def plan_shards(
    root: SourceRoot,
    listing: Listing,
    *,
    input_prefix: str = "input/",
    shard_size: int = 256,
    max_shards: int = 64,
    labels: dict[str, LabelSet] | None = None,
) -> list[dict[str, Any]]:
    """Split a listing into JSON-serialisable shard specs, deterministically.

    Items are sorted by source path and cut into contiguous runs of ``shard_size`` (grown when that
    would make more than ``max_shards`` shards). Each item carries its output ``key`` (names resolved
    over the whole listing, so colliding stems are disambiguated the same way in every shard) and,
    when a manifest matched it, its ``labels``.
    """
    if shard_size < 1 or max_shards < 1:
        raise ValueError(f"shard_size and max_shards must be positive, got {shard_size}, {max_shards}")
    prefix = normalise_prefix(input_prefix)
    items = sorted(listing.items, key=lambda i: i.source)
    names = output_names(i.source for i in items)
    labels = labels or {}
    size = max(shard_size, math.ceil(len(items) / max_shards)) if items else shard_size
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    specs = []
    for index, chunk in enumerate(chunks):
        entries = []
        for item in chunk:
            entry = item.to_dict() | {"key": prefix + names[item.source]}
            if item.source in labels:
                entry["labels"] = labels[item.source].to_dict()
            entries.append(entry)
        specs.append(
            {
                "index": index,
                "count": len(chunks),
                "source": root.uri,
                "input_prefix": prefix,
                "items": entries,
            }
        )
    return specs
