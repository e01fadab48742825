"""The ledger: what earlier runs learnt about every source, so a rerun decodes and uploads nothing.

One JSON object, written only by the collect step, keyed by source path, each entry holding the
source's SHA-256 (and S3 ETag) and the options fingerprint:

* ``uploaded``: the output key, its ETag as listed after the upload, the transform and pixel hash.
  A rerun trusts the entry only while a listing shows the key with that same ETag; otherwise it
  reads the object's own metadata (every output JPEG carries its checksum), so the ledger is a
  cache, never the truth.
* ``rejected`` and ``duplicate``: sources that left no object, so a rerun neither decodes them
  again nor reports them as new work. A reject is remembered under the options *and* the decode
  limits that refused it (``PreprocessOptions.rejects_fingerprint``): raise a limit and the files it
  refused are tried again, while every image already made stays as it is.

The plan step reads the ledger once per run (with one listing of the output prefix) and hands each
shard the entries of its own photos (:func:`deeplens_pipeline.images.plan.plan_shards`).
"""

from __future__ import annotations

import json
from typing import Any

from deeplens_pipeline.images.store import (
    META_ETAG,
    META_PARAMS,
    META_PIXELS,
    META_SHA256,
    META_TRANSFORM,
    put_text_if_changed,
    read_object,
)

DEFAULT_LEDGER_KEY = "state/images-ledger.json"
VERSION = 1


def load(client: Any, bucket: str, key: str) -> dict[str, dict[str, Any]]:
    """``{source: entry}`` from S3; empty when the ledger does not exist or is not ours."""
    body = read_object(client, bucket, key)
    if body is None:
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}
    entries = data.get("entries", {})
    return entries if isinstance(entries, dict) else {}


def known_output(entry: dict[str, Any] | None, key: str, listed_etag: str) -> dict[str, str] | None:
    """The output metadata a ledger entry vouches for: only when it recorded ``key`` as uploaded
    with the ETag a listing shows now (else None: the object itself must be asked)."""
    if (
        not entry
        or entry.get("status") != "uploaded"
        or entry.get("key") != key
        or entry.get("output_etag") != listed_etag
    ):
        return None
    meta = {
        META_SHA256: entry["sha256"],
        META_PARAMS: entry["params"],
        META_TRANSFORM: entry["transform"],
        META_PIXELS: entry.get("pixels", ""),
    }
    if entry.get("etag"):
        meta[META_ETAG] = entry["etag"]
    return meta


def entries_from(
    rejected: list[dict[str, Any]],
    duplicates: list[dict[str, Any]],
    fingerprint: str,
    rejects_fingerprint: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Ledger entries for a run's rejects and duplicates (those whose checksum is known); rejects
    are recorded under ``rejects_fingerprint`` (options and decode limits) when given."""

    def entry(record: dict[str, Any], status: str, params: str, *fields: str) -> dict[str, Any]:
        return {"status": status, **{f: record[f] for f in fields}} | {
            "sha256": record["sha256"],
            "etag": record.get("etag"),
            "params": params,
        }

    refused_under = rejects_fingerprint or fingerprint
    entries = {
        r["file"]: entry(r, "rejected", refused_under, "kind", "reason") for r in rejected if r.get("sha256")
    }
    entries |= {
        d["source"]: entry(d, "duplicate", fingerprint, "duplicate_of") for d in duplicates if d.get("sha256")
    }
    return entries


def uploaded_entries(images: list[dict[str, Any]], etags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Ledger entries for images in S3 (``etags`` maps key -> listed ETag); images without a
    transform (not produced by a shard) or not listed are left out."""
    entries: dict[str, dict[str, Any]] = {}
    for image in images:
        if "transform" not in image or image["key"] not in etags or not image.get("params"):
            continue
        entries[image["source"]] = {
            "status": "uploaded",
            "key": image["key"],
            "sha256": image["sha256"],
            "params": image["params"],
            "etag": image.get("etag"),
            "output_etag": etags[image["key"]],
            "transform": json.dumps(image["transform"], separators=(",", ":")),
            "pixels": image.get("pixels", ""),
        }
    return entries


def save(client: Any, bucket: str, key: str, entries: dict[str, dict[str, Any]]) -> bool:
    """Write the ledger unless S3 already holds the same one; True when written."""
    text = json.dumps({"version": VERSION, "entries": entries}, sort_keys=True, indent=1)
    return put_text_if_changed(client, bucket, key, text, "application/json")
