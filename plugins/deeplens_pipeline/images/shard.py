"""Plan the work in shards and run one shard: hash, skip what S3 already holds, preprocess on a process
pool, drop duplicates, carry boxes, upload.

A shard is self-contained (its spec names every file and key, and, when the plan resolved it, what
S3 and the ledger already hold for each), runs in its own temporary folder and is idempotent: run it
twice and the second run finds every output in S3 with the same source checksum and options
fingerprint, so it decodes and uploads nothing. A resolved shard lists nothing and reads no ledger:
the plan did that once for the whole run (:func:`deeplens_pipeline.images.plan.survey`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from deeplens_pipeline.images import ledger as ledger_mod
from deeplens_pipeline.images.boxes import LabelsError, LabelSet, carry_boxes, parse_voc
from deeplens_pipeline.images.geometry import Transform
from deeplens_pipeline.images.plan import plan_shards, shard_items
from deeplens_pipeline.images.preprocess import (
    PreprocessOptions,
    init_worker,
    preprocess_file,
    sha256_file,
    work,
)
from deeplens_pipeline.images.progress import ProgressCallback
from deeplens_pipeline.images.sources import SourceRoot, outside_reason, parse_source
from deeplens_pipeline.images.store import (
    META_ETAG,
    META_PARAMS,
    META_PIXELS,
    META_SHA256,
    META_TRANSFORM,
    Listed,
    Upload,
    common_prefix,
    download_files,
    head_metadata,
    list_objects,
    output_metadata,
    upload_files,
)

log = logging.getLogger(__name__)

__all__ = ["ShardFailed", "ShardSettings", "plan_shards", "preprocess_many", "run_shard"]


class ShardFailed(RuntimeError):
    """Some outputs of a shard could not be uploaded even after retries; ``result`` has the rest."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class ShardSettings:
    """How a shard runs; ``processes`` None means every CPU the worker may use."""

    options: PreprocessOptions = field(default_factory=PreprocessOptions)
    processes: int | None = None
    upload_concurrency: int = 10
    upload_rounds: int = 3
    backoff: float = 1.0
    min_visibility: float = 0.0
    ledger_key: str | None = ledger_mod.DEFAULT_LEDGER_KEY


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def preprocess_many(
    jobs: list[tuple[str, str, str]],
    options: PreprocessOptions,
    processes: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, dict[str, Any]]:
    """Run :func:`preprocess_file` over ``(name, source path, output path)`` jobs; ``{name: outcome}``.

    More than one process uses a ``spawn`` pool (safe inside a threaded Airflow task). A worker that
    dies (a decoder crash) breaks the whole pool and every unfinished job with it, so those jobs are
    run again one at a time in a single-worker pool: only the file that kills its worker there
    becomes an ``unreadable`` reject, never the batch or its neighbours.
    """
    processes = min(processes or available_cpus(), max(1, len(jobs)))
    outcomes: dict[str, dict[str, Any]] = {}
    total = len(jobs)

    def record(name: str, outcome: dict[str, Any]) -> None:
        outcomes[name] = outcome
        if progress:
            progress("preprocess", len(outcomes), total)

    if progress and total:
        progress("preprocess", 0, total)
    if processes <= 1:
        for name, src, out in jobs:
            record(name, preprocess_file(src, out, options))
        return outcomes
    lost = []
    with _spawn_pool(processes, options) as pool:
        with _plain_main():  # workers start during submit(); none is started later
            futures = {pool.submit(work, (src, out)): (name, src, out) for name, src, out in jobs}
        for future in as_completed(futures):
            try:
                record(futures[future][0], future.result())
            except BrokenProcessPool:
                lost.append(futures[future])
    _isolate(sorted(lost), options, record)
    return outcomes


def _spawn_pool(processes: int, options: PreprocessOptions) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(options.to_dict(),),
    )


def _isolate(
    jobs: list[tuple[str, str, str]],
    options: PreprocessOptions,
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    """Run jobs one by one in a single-worker pool, replaced whenever a job kills its worker.

    When the first two jobs both kill their worker, the workers themselves cannot run (an import or
    start-up failure, not two bad files): RuntimeError, rather than rejecting every file for it.
    """
    pool: ProcessPoolExecutor | None = None
    survived = died = 0
    try:
        for name, src, out in jobs:
            if pool is None:
                pool = _spawn_pool(1, options)
            with _plain_main():
                future = pool.submit(work, (src, out))
            try:
                outcome = future.result()
                survived += 1
            except BrokenProcessPool as exc:
                pool.shutdown()
                pool = None
                died += 1
                if died == 2 and not survived:
                    raise RuntimeError(
                        "decoder worker processes die before finishing any file (see the worker's "
                        "error above); no file was rejected for it"
                    ) from exc
                outcome = {
                    "status": "rejected",
                    "kind": "unreadable",
                    "reason": f"unreadable: the decoder process died ({type(exc).__name__})",
                }
            record(name, outcome)
    finally:
        if pool is not None:
            pool.shutdown()


@contextmanager
def _plain_main() -> Iterator[None]:
    """Hide the ``__main__`` module while spawning workers.

    A ``spawn`` child re-imports its parent's main script (in a task: Airflow's command line, which
    costs seconds and a second Airflow in memory per worker). The workers need only this package,
    which they import by name, so they are started while ``__main__`` is an empty module.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _reject(item: dict[str, Any], kind: str, reason: str, sha256: str | None = None) -> dict[str, Any]:
    record = {"file": item["source"], "kind": kind, "reason": reason, "size": int(item.get("size", 0))}
    if sha256:
        record["sha256"] = sha256
    if item.get("etag"):
        record["etag"] = item["etag"]
    return record


def _duplicate(item: dict[str, Any], of: str, sha256: str) -> dict[str, Any]:
    record = {"source": item["source"], "duplicate_of": of, "sha256": sha256}
    if item.get("etag"):
        record["etag"] = item["etag"]
    return record


def _load_labels(item: dict[str, Any], root: SourceRoot, client: Any, notes: list[str]) -> LabelSet | None:
    if "labels" in item:
        if item.get("voc"):
            notes.append(f"manifest boxes used; {item['voc']} ignored")
        return LabelSet.from_dict(item["labels"])
    voc = item.get("voc")
    if not voc:
        return None
    try:
        if root.is_s3:
            data = client.get_object(Bucket=root.bucket, Key=voc)["Body"].read()
        else:
            data = root.local_path(voc).read_bytes()
        return parse_voc(data, voc)
    except (LabelsError, OSError) as exc:
        notes.append(f"boxes not carried: {exc}")
    except Exception as exc:  # an S3 error on a sidecar must not lose the image
        notes.append(f"boxes not carried: cannot read {voc} ({type(exc).__name__}: {exc})")
    return None


def run_shard(
    spec: dict[str, Any],
    *,
    bucket: str,
    client: Any,
    settings: ShardSettings | None = None,
    workdir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run one shard spec from :func:`plan_shards` and return its JSON-serialisable result.

    ``client`` is a boto3 S3 client (it reads an S3 source and writes ``bucket``). Raises
    :class:`ShardFailed` when uploads still fail after the retry rounds.
    """
    settings = settings or ShardSettings()
    options = settings.options
    fingerprint = options.fingerprint()
    refused_under = options.rejects_fingerprint()
    root = parse_source(spec["source"])
    result: dict[str, Any] = {
        "shard": int(spec.get("index", 0)),
        "images": [],
        "rejected": [],
        "duplicates": [],
        "failed": [],
        "processed": 0,
        "unchanged": 0,
        "uploaded": 0,
        "uploaded_bytes": 0,
        "params": fingerprint,
        "reject_params": refused_under,
    }
    if spec.get("items_key"):
        result["plan_key"] = spec["items_key"]
    items: list[dict[str, Any]] = sorted(shard_items(spec, client, bucket), key=lambda i: i["source"])
    for item in items:
        if item.get("refused"):  # a link out of the source folder: never read
            result["rejected"].append(_reject(item, item["refused"].split(":", 1)[0], item["refused"]))
    items = [i for i in items if not i.get("refused")]
    if not items:
        return result
    if spec.get("resolved"):
        ledger = {i["source"]: i["seen"] for i in items if i.get("seen")}
        existing = _resolved_outputs(items, client, bucket, settings.upload_concurrency)
    else:
        ledger = ledger_mod.load(client, bucket, settings.ledger_key) if settings.ledger_key else {}
        prefix = spec.get("input_prefix") or common_prefix([i["key"] for i in items])
        existing = _existing_outputs(items, ledger, client, bucket, prefix, settings.upload_concurrency)

    with tempfile.TemporaryDirectory(prefix="deeplens-shard-", dir=workdir) as tmpdir:
        tmp = Path(tmpdir)
        paths, sha = _fetch_and_hash(
            items, root, client, existing, ledger, options, tmp, settings.upload_concurrency, result
        )
        by_source = {i["source"]: i for i in items}
        keep: dict[str, dict[str, Any]] = {}  # source -> image record
        by_sha: dict[str, str] = {}
        by_pixels: dict[str, str] = {}
        # 1. outputs S3 already holds for these exact bytes and options
        for item in items:
            meta = existing.get(item["key"])
            digest = sha.get(item["source"])
            if meta and digest and meta.get(META_SHA256) == digest and meta.get(META_PARAMS) == fingerprint:
                keep[item["source"]] = {
                    "item": item,
                    "status": "unchanged",
                    "transform": Transform.from_metadata(meta[META_TRANSFORM]),
                    "pixels": meta.get(META_PIXELS, ""),
                    "notes": [],
                }
                by_sha.setdefault(digest, item["source"])
                if meta.get(META_PIXELS):
                    by_pixels.setdefault(meta[META_PIXELS], item["source"])
        # 2. what the ledger remembers as rejected or duplicate, and byte-identical copies
        jobs: list[tuple[str, str, str]] = []
        copies: list[tuple[dict[str, Any], str]] = []  # byte-identical to an earlier source
        for item in items:
            source = item["source"]
            if source in keep or source not in sha:
                continue
            digest = sha[source]
            remembered = ledger.get(source)
            if remembered and remembered.get("sha256") == digest:
                status, params = remembered.get("status"), remembered.get("params")
                if status == "rejected" and params == refused_under:
                    result["rejected"].append(_reject(item, remembered["kind"], remembered["reason"], digest))
                    continue
                primary = remembered.get("duplicate_of")
                gone = primary in by_source and primary not in keep and primary not in sha
                if status == "duplicate" and params == fingerprint and not gone:
                    result["duplicates"].append(_duplicate(item, primary, digest))
                    continue
            if digest in by_sha:
                copies.append((item, by_sha[digest]))
                continue
            by_sha[digest] = source
            out = tmp / "out" / PurePosixPath(item["key"]).name
            jobs.append((source, str(paths[source]), str(out)))
        # 3. decode, square, encode
        outcomes = preprocess_many(jobs, options, settings.processes, progress)
        for source, _, out in sorted(jobs):
            outcome = outcomes[source]
            item = by_source[source]
            if outcome["status"] != "ok":
                result["rejected"].append(_reject(item, outcome["kind"], outcome["reason"], sha[source]))
                continue
            result["processed"] += 1
            if outcome["pixels"] in by_pixels:
                result["duplicates"].append(_duplicate(item, by_pixels[outcome["pixels"]], sha[source]))
                continue
            by_pixels[outcome["pixels"]] = source
            keep[source] = {
                "item": item,
                "status": "processed",
                "transform": Transform(**outcome["transform"]),
                "pixels": outcome["pixels"],
                "notes": list(outcome["notes"]),
                "output": Path(out),
            }
        rejected_reason = {r["file"]: r for r in result["rejected"]}
        for item, primary in copies:
            if primary in keep:
                result["duplicates"].append(_duplicate(item, primary, sha[item["source"]]))
            elif primary in rejected_reason:
                first = rejected_reason[primary]
                result["rejected"].append(
                    _reject(
                        item,
                        first["kind"],
                        f"{first['reason']} (same bytes as {primary})",
                        sha[item["source"]],
                    )
                )
            else:  # the primary was itself a pixel duplicate
                of = next(d["duplicate_of"] for d in result["duplicates"] if d["source"] == primary)
                result["duplicates"].append(_duplicate(item, of, sha[item["source"]]))
        # 4. boxes, then upload what is new
        uploads = []
        for source in sorted(keep):
            record = keep[source]
            item = record["item"]
            labels = _load_labels(item, root, client, record["notes"])
            record["labels"] = labels
            if labels is not None:
                carried = carry_boxes(labels, record["transform"], settings.min_visibility)
                record["boxes"] = carried.boxes
                record["notes"].extend(f"{labels.origin}: {n}" for n in carried.notes)
            if record["status"] == "processed":
                metadata = output_metadata(
                    source=source,
                    sha256=sha[source],
                    transform=record["transform"].to_metadata(),
                    params=fingerprint,
                    pixels=record["pixels"],
                )
                if root.is_s3 and item.get("etag"):
                    metadata[META_ETAG] = item["etag"]
                uploads.append(Upload(path=record["output"], key=item["key"], metadata=metadata))
        done = 0

        def uploaded(_: Upload) -> None:
            nonlocal done
            done += 1
            if progress:
                progress("upload", done, len(uploads))

        if progress and uploads:
            progress("upload", 0, len(uploads))
        report = upload_files(
            client,
            bucket,
            uploads,
            max_concurrency=settings.upload_concurrency,
            rounds=settings.upload_rounds,
            backoff=settings.backoff,
            on_done=uploaded,
        )
    result["uploaded"] = len(report.uploaded)
    result["uploaded_bytes"] = report.bytes
    for source in sorted(keep):
        record = keep[source]
        item = record["item"]
        if item["key"] in report.failed:
            result["failed"].append(
                {"source": source, "key": item["key"], "error": report.failed[item["key"]]}
            )
            continue
        if record["status"] == "unchanged":
            result["unchanged"] += 1
        boxes = record.get("boxes") or []
        result["images"].append(
            {
                "key": item["key"],
                "source": source,
                "sha256": sha[source],
                "pixels": record["pixels"],
                "status": record["status"],
                "transform": json.loads(record["transform"].to_metadata()),
                "params": fingerprint,
                **({"etag": item["etag"]} if item.get("etag") else {}),
                "labelled": record.get("labels") is not None,
                "boxes_carried": len(boxes),
                "boxes": [{k: v for k, v in vars(b).items() if v is not None} for b in boxes],
                "notes": record["notes"],
            }
        )
    if result["failed"]:
        raise ShardFailed(
            f"shard {result['shard']}: {len(result['failed'])} upload(s) failed after "
            f"{settings.upload_rounds} retry rounds, e.g. {result['failed'][0]['key']}: "
            f"{result['failed'][0]['error']}",
            result,
        )
    return result


def _existing_outputs(
    items: list[dict[str, Any]],
    ledger: dict[str, dict[str, Any]],
    client: Any,
    bucket: str,
    prefix: str,
    concurrency: int,
) -> dict[str, dict[str, str] | None]:
    """Output metadata per key (None: no object), from one listing plus the ledger (a spec the plan
    did not resolve).

    A key the listing lacks needs no request; a key whose listed ETag is the one the ledger
    recorded takes its metadata from the ledger; only the rest are looked up with HEAD.
    """
    listed = list_objects(client, bucket, prefix)
    existing: dict[str, dict[str, str] | None] = {}
    heads = []
    for item in items:
        key = item["key"]
        found = listed.get(key)
        if found is None:
            existing[key] = None
        elif (meta := ledger_mod.known_output(ledger.get(item["source"]), key, found.etag)) is not None:
            existing[key] = meta
        else:
            heads.append(key)
    existing.update(head_metadata(client, bucket, heads, concurrency))
    return existing


def _resolved_outputs(
    items: list[dict[str, Any]], client: Any, bucket: str, concurrency: int
) -> dict[str, dict[str, str] | None]:
    """Output metadata per key from what the plan found (``output`` of each item); only the objects
    the ledger could not vouch for are looked up, with HEAD."""
    existing: dict[str, dict[str, str] | None] = {}
    heads = []
    for item in items:
        output = item.get("output")
        if output == "head":
            heads.append(item["key"])
        else:
            existing[item["key"]] = output if isinstance(output, dict) else None
    existing.update(head_metadata(client, bucket, heads, concurrency))
    return existing


def _fetch_and_hash(
    items: list[dict[str, Any]],
    root: SourceRoot,
    client: Any,
    existing: dict[str, dict[str, str] | None],
    ledger: dict[str, dict[str, Any]],
    options: PreprocessOptions,
    tmp: Path,
    concurrency: int,
    result: dict[str, Any],
) -> tuple[dict[str, Path], dict[str, str]]:
    """Local paths and SHA-256 of every readable item; S3 objects whose ETag proves them unchanged
    are not downloaded (their checksum comes from the output's metadata or the ledger). A local
    path that leads out of the source folder (a link made or swapped since the plan) is refused."""
    fingerprint = options.fingerprint()
    remembered_under = {"rejected": options.rejects_fingerprint(), "duplicate": fingerprint}
    paths: dict[str, Path] = {}
    sha: dict[str, str] = {}
    downloads: list[tuple[str, Path]] = []
    listed: dict[str, Listed] = {}
    real_root = None if root.is_s3 else Path(os.path.realpath(root.prefix))
    for n, item in enumerate(items):
        source = item["source"]
        if real_root is None:
            etag = item.get("etag")
            meta = existing.get(item["key"]) or {}
            remembered = ledger.get(source) or {}
            if etag and meta.get(META_ETAG) == etag and meta.get(META_PARAMS) == fingerprint:
                sha[source] = meta[META_SHA256]
                continue
            status = remembered.get("status")
            if (
                etag
                and status in remembered_under
                and remembered.get("etag") == etag
                and remembered.get("params") == remembered_under[status]
            ):
                sha[source] = remembered["sha256"]
                continue
            path = tmp / "src" / str(n) / PurePosixPath(source).name
            downloads.append((source, path))
            if item.get("size") is not None and etag:
                listed[source] = Listed(size=int(item["size"]), etag=etag)
            paths[source] = path
        else:
            path = root.local_path(source)
            reason = outside_reason(real_root, path)
            if reason:
                result["rejected"].append(_reject(item, "outside-source", reason))
                continue
            paths[source] = path
    errors = download_files(client, root.bucket, downloads, max_concurrency=concurrency, listed=listed)
    by_source = {i["source"]: i for i in items}
    for source, path in paths.items():
        if source in errors:
            result["rejected"].append(
                _reject(by_source[source], "unreadable", f"unreadable: {errors[source]}")
            )
            continue
        try:
            sha[source] = sha256_file(path)
        except OSError as exc:
            result["rejected"].append(
                _reject(by_source[source], "unreadable", f"unreadable: cannot read the file ({exc})")
            )
    return paths, sha
