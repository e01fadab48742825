"""Cut a listing into shards: JSON-serialisable, deterministic work units for the mapped tasks.

The plan step reads everything a run needs to know about the bucket once (:func:`survey`: one
listing of the output prefix and the ledger) and gives every photo of a shard what it needs from
that (``output``: absent, known, or to be looked up; ``seen``: an earlier reject or duplicate), so a
shard lists nothing and a rerun over unchanged photos costs the same few requests whatever the
number of shards. In Airflow the shards' photo lists go to S3 (:func:`store_specs`), one small
object per shard, and the XCom carries only their keys.

Pure Python (no Pillow, no boto3 at import): the Airflow planning task imports it while the DAG
file's parse stays cheap.
"""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deeplens_pipeline.images import ledger as ledger_mod
from deeplens_pipeline.images.boxes import LabelSet
from deeplens_pipeline.images.naming import normalise_prefix, output_names
from deeplens_pipeline.images.sources import Listing, SourceRoot
from deeplens_pipeline.images.store import Listed, delete_keys, list_objects, read_object
from deeplens_pipeline.layout import run_segment

log = logging.getLogger(__name__)

#: Where the plan step writes each shard's photo list (``<prefix><run>/shard-00000.json``); the
#: collect step deletes a run's lists when it is done.
PLANS_PREFIX = "state/plans/"


@dataclass(frozen=True)
class Known:
    """What the bucket holds before a run: the output prefix's objects and the ledger's entries."""

    outputs: dict[str, Listed] = field(default_factory=dict)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)


def survey(client: Any, bucket: str, input_prefix: str, ledger_key: str | None) -> Known:
    """One listing of ``input_prefix`` (1 request per 1,000 keys) and one GET of the ledger."""
    ledger = ledger_mod.load(client, bucket, ledger_key) if ledger_key else {}
    return Known(outputs=list_objects(client, bucket, normalise_prefix(input_prefix)), ledger=ledger)


def plan_shards(
    root: SourceRoot,
    listing: Listing,
    *,
    input_prefix: str = "input/",
    shard_size: int = 256,
    max_shards: int = 64,
    labels: dict[str, LabelSet] | None = None,
    known: Known | None = None,
) -> list[dict[str, Any]]:
    """Split a listing into JSON-serialisable shard specs, deterministically.

    Items are sorted by source path and cut into contiguous runs of ``shard_size`` (grown when that
    would make more than ``max_shards`` shards). Each item carries its output ``key`` (names resolved
    over the whole listing, so colliding stems are disambiguated the same way in every shard) and,
    when a manifest matched it, its ``labels``; a refused item (a link out of the source folder)
    carries its reason instead of a key.

    With ``known`` (from :func:`survey`) the specs are *resolved*: each item also carries
    ``output`` (None: no such object; a metadata dict the ledger vouches for, its ETag being the
    listed one; ``"head"``: the object exists but its metadata must be read) and, when the ledger
    remembers it as rejected or a duplicate, ``seen``; the shard then makes no listing and reads no
    ledger. Without it, each shard looks these up itself.
    """
    if shard_size < 1 or max_shards < 1:
        raise ValueError(f"shard_size and max_shards must be positive, got {shard_size}, {max_shards}")
    prefix = normalise_prefix(input_prefix)
    items = sorted(listing.items, key=lambda i: i.source)
    names = output_names(i.source for i in items if not i.refused)
    labels = labels or {}
    size = max(shard_size, math.ceil(len(items) / max_shards)) if items else shard_size
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    specs = []
    for index, chunk in enumerate(chunks):
        entries = []
        for item in chunk:
            entry = item.to_dict()
            if not item.refused:
                entry["key"] = prefix + names[item.source]
                if item.source in labels:
                    entry["labels"] = labels[item.source].to_dict()
                if known is not None:
                    _resolve(entry, known)
            entries.append(entry)
        spec = {"index": index, "count": len(chunks), "source": root.uri, "input_prefix": prefix}
        if known is not None:
            spec["resolved"] = True
        specs.append(spec | {"items": entries})
    return specs


def _resolve(entry: dict[str, Any], known: Known) -> None:
    key = entry["key"]
    remembered = known.ledger.get(entry["source"])
    listed = known.outputs.get(key)
    if listed is None:
        entry["output"] = None
    else:
        entry["output"] = ledger_mod.known_output(remembered, key, listed.etag) or "head"
    if remembered and remembered.get("status") in {"rejected", "duplicate"}:
        entry["seen"] = remembered


def plans_prefix(run_id: str, prefix: str = PLANS_PREFIX) -> str:
    """The key prefix of one run's shard lists."""
    return f"{normalise_prefix(prefix)}{run_segment(run_id)}/"


def store_specs(
    specs: list[dict[str, Any]], client: Any, bucket: str, key_prefix: str, max_concurrency: int = 8
) -> list[dict[str, Any]]:
    """Write each spec's items to ``s3://bucket/<key_prefix>shard-NNNNN.json`` and return the specs
    with ``items_key`` (and the photo count, ``photos``) in place of ``items``: what the XCom holds."""

    def put(spec: dict[str, Any]) -> str:
        key = f"{key_prefix}shard-{int(spec['index']):05d}.json"
        body = json.dumps(spec["items"], separators=(",", ":")).encode()
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return key

    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(specs)))) as pool:
        keys = list(pool.map(put, specs))
    return [
        {k: v for k, v in spec.items() if k != "items"} | {"items_key": key, "photos": len(spec["items"])}
        for spec, key in zip(specs, keys, strict=True)
    ]


def shard_items(spec: dict[str, Any], client: Any, bucket: str) -> list[dict[str, Any]]:
    """A spec's items: inline, or read from the object :func:`store_specs` wrote."""
    if "items" in spec:
        return list(spec["items"])
    key = spec["items_key"]
    body = read_object(client, bucket, key)
    if body is None:
        raise ValueError(
            f"this shard's photo list s3://{bucket}/{key} is gone (the run's collect step deletes it): "
            "clear the images group from plan_shards to run it again"
        )
    items = json.loads(body)
    if not isinstance(items, list):
        raise ValueError(f"s3://{bucket}/{key} is not a shard's photo list")
    return items


def delete_plans(client: Any, bucket: str, keys: list[str]) -> int:
    """Delete the shard lists a run's plan wrote; how many. Best effort: a list left behind (no
    ``s3:DeleteObject`` permission, S3 unreachable) costs a few KB and fails nothing."""
    try:
        return delete_keys(client, bucket, sorted(set(keys)))
    except Exception as exc:
        log.warning(
            "could not delete the shards' photo lists under s3://%s/%s (%s: %s); they are not read "
            "again and may be deleted by hand",
            bucket,
            keys[0].rsplit("/", 1)[0] + "/" if keys else "",
            type(exc).__name__,
            exc,
        )
        return 0
