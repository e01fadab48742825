"""Merge shard results: cross-shard duplicates, the rejects report, the pre-labelled manifest, the verdict."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deeplens_pipeline.images import ledger as ledger_mod
from deeplens_pipeline.images.boxes import Box, class_ids, manifest_line
from deeplens_pipeline.images.naming import normalise_prefix
from deeplens_pipeline.images.plan import delete_plans
from deeplens_pipeline.images.rejects import REJECT_KINDS
from deeplens_pipeline.images.store import list_objects, put_text_if_changed
from deeplens_pipeline.layout import BucketLayout, run_segment

log = logging.getLogger(__name__)

DEFAULT_REPORTS_PREFIX = "reports/"
WORST_SHOWN = 10


class ImagesUnusable(RuntimeError):
    """Nothing usable is left, or too many files were rejected; the message names the worst files."""


@dataclass
class Merged:
    """All shards' results in one, with cross-shard duplicates moved out of ``images``."""

    images: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    processed: int = 0
    unchanged: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    params: str = ""
    reject_params: str = ""
    plan_keys: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.images) + len(self.rejected) + len(self.duplicates) + len(self.failed)


def merge_shard_results(results: Iterable[dict[str, Any]]) -> Merged:
    """Concatenate shard results; of images with identical pixels in different shards keep one.

    The survivor is the one already in S3 before this run, else the first by source path; the
    others become duplicates and their keys are listed in ``remove``.
    """
    merged = Merged()
    for result in results:
        if not isinstance(result, dict):
            raise TypeError(f"a shard result must be a dict, got {type(result).__name__}")
        merged.images.extend(result.get("images", []))
        merged.rejected.extend(result.get("rejected", []))
        merged.duplicates.extend(result.get("duplicates", []))
        merged.failed.extend(result.get("failed", []))
        merged.processed += int(result.get("processed", 0))
        merged.uploaded += int(result.get("uploaded", 0))
        merged.uploaded_bytes += int(result.get("uploaded_bytes", 0))
        merged.params = merged.params or str(result.get("params", ""))
        merged.reject_params = merged.reject_params or str(result.get("reject_params", ""))
        if result.get("plan_key"):
            merged.plan_keys.append(str(result["plan_key"]))
    survivors: dict[str, dict[str, Any]] = {}
    kept = []
    for image in sorted(merged.images, key=lambda i: (i.get("status") != "unchanged", i["source"])):
        pixels = image.get("pixels")
        if pixels and pixels in survivors:
            first = survivors[pixels]
            merged.duplicates.append(
                {"source": image["source"], "duplicate_of": first["source"], "sha256": image["sha256"]}
            )
            merged.remove.append(image["key"])
            if image.get("status") == "processed":
                merged.uploaded -= 1
            continue
        if pixels:
            survivors[pixels] = image
        kept.append(image)
    merged.images = sorted(kept, key=lambda i: i["key"])
    merged.unchanged = sum(1 for i in merged.images if i.get("status") == "unchanged")
    merged.rejected.sort(key=lambda r: r["file"])
    merged.duplicates.sort(key=lambda d: d["source"])
    return merged


def worst_rejects(rejected: list[dict[str, Any]], limit: int = WORST_SHOWN) -> list[dict[str, Any]]:
    """Rejects ranked worst first: by kind (bombs, non-images, truncated, ...), then by size."""
    rank = {kind: i for i, kind in enumerate(REJECT_KINDS)}
    return sorted(
        rejected, key=lambda r: (rank.get(r["kind"], len(rank)), -int(r.get("size", 0)), r["file"])
    )[:limit]


def rejects_csv(rejected: list[dict[str, Any]]) -> str:
    """The rejects report: a ``file,reason`` CSV, one line per rejected file."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "reason"])
    for r in rejected:
        writer.writerow([r["file"], r["reason"]])
    return out.getvalue()


def verdict(merged: Merged, max_reject_share: float) -> str | None:
    """Why the stage must fail (nothing usable, or too many rejects), or None."""
    candidates = len(merged.images) + len(merged.rejected)
    worst = "; ".join(f"{r['file']} ({r['reason']})" for r in worst_rejects(merged.rejected))
    if not merged.images:
        if not merged.rejected:
            return "the source holds no images"
        return f"no usable image is left: all {len(merged.rejected)} file(s) were rejected, worst: {worst}"
    share = len(merged.rejected) / candidates if candidates else 0.0
    if share > max_reject_share:
        return (
            f"{len(merged.rejected)} of {candidates} files rejected ({share:.0%}), over max_reject_share="
            f"{max_reject_share:.0%}; worst: {worst}"
        )
    return None


def prelabelled_manifest(
    images: list[dict[str, Any]],
    bucket: str,
    size: int,
    labels: list[str] | None = None,
    attribute: str = "bounding-box",
) -> tuple[str, list[str]]:
    """Ground Truth augmented-manifest text for every image that came with boxes, and notes."""
    labelled = [i for i in images if i.get("labelled")]
    boxes_of = {i["key"]: [Box(**b) for b in i.get("boxes", [])] for i in labelled}
    ids, _ = class_ids(labels, (b for boxes in boxes_of.values() for b in boxes))
    lines, notes = [], []
    for image in labelled:
        line, line_notes = manifest_line(
            f"s3://{bucket}/{image['key']}", size, boxes_of[image["key"]], ids, attribute
        )
        lines.append(line)
        notes.extend(f"{image['source']}: {n}" for n in line_notes)
    return "".join(line + "\n" for line in lines), notes


ARCHIVE_PREFIX = "archive/"


def archive_withdrawn(
    client: Any, bucket: str, merged: Merged, present: dict[str, Any], ledger_key: str, run_id: str
) -> list[str]:
    """Move the pipeline's images whose photo left the source to ``archive/<run>/<key>``.

    Only objects the ledger says the pipeline uploaded are touched, and only when this run has
    images at all (an empty or unreachable source archives nothing). The copy is made before the
    original is deleted: a withdrawn photo leaves the training data but is never destroyed. Its
    labels are withdrawn by the labelling step, which no longer finds the image.
    """
    previous = ledger_mod.load(client, bucket, ledger_key)
    keys = {i["key"] for i in merged.images}
    gone = sorted(
        {
            e["key"]
            for e in previous.values()
            if e.get("status") == "uploaded" and e.get("key") not in keys and e.get("key") in present
        }
    )
    if not gone:
        return []
    if not merged.images:
        log.warning(
            "no usable image this run, so the %d image(s) of earlier runs are kept in place "
            "(an empty or unreachable source never archives everything)",
            len(gone),
        )
        return []
    for key in gone:
        target = f"{ARCHIVE_PREFIX}{run_segment(run_id)}/{key}"
        client.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
        client.delete_object(Bucket=bucket, Key=key)
        log.warning("%s: its photo left the source; moved to s3://%s/%s", key, bucket, target)
    return gone


def finish(
    results: Iterable[dict[str, Any]],
    *,
    client: Any,
    bucket: str,
    input_prefix: str = "input/",
    run_id: str = "manual",
    size: int = 512,
    max_reject_share: float = 0.2,
    labels: list[str] | None = None,
    label_attribute: str = "bounding-box",
    prelabelled_key: str | None = BucketLayout.prelabelled_key,
    reports_prefix: str = DEFAULT_REPORTS_PREFIX,
    ledger_key: str | None = ledger_mod.DEFAULT_LEDGER_KEY,
) -> dict[str, Any]:
    """Merge shard results, tidy S3 and write the reports; return the stage's summary.

    Removes cross-shard duplicates' objects, checks every image key against a listing of
    ``input_prefix``, writes the rejects report (``s3://bucket/<reports_prefix><run>/rejects.csv``,
    only when something was rejected), the pre-labelled manifest and the ledger (each only when its
    content changed), deletes the shards' photo lists the plan step wrote, then raises
    :class:`ImagesUnusable` when the verdict says so.
    """
    prefix = normalise_prefix(input_prefix)
    merged = merge_shard_results(results)
    for key in merged.remove:
        client.delete_object(Bucket=bucket, Key=key)
    present = list_objects(client, bucket, prefix)
    missing = [i["key"] for i in merged.images if i["key"] not in present]
    if missing:
        raise RuntimeError(
            f"{len(missing)} uploaded image(s) are not in s3://{bucket}/{prefix}: {missing[:5]}"
        )

    report_uri = None
    if merged.rejected:
        report_key = f"{normalise_prefix(reports_prefix)}{run_segment(run_id)}/rejects.csv"
        client.put_object(
            Bucket=bucket, Key=report_key, Body=rejects_csv(merged.rejected).encode(), ContentType="text/csv"
        )
        report_uri = f"s3://{bucket}/{report_key}"

    manifest_uri, manifest_notes = None, []
    if prelabelled_key and any(i.get("labelled") for i in merged.images):
        text, manifest_notes = prelabelled_manifest(merged.images, bucket, size, labels, label_attribute)
        put_text_if_changed(client, bucket, prelabelled_key, text, "application/x-ndjson")
        manifest_uri = f"s3://{bucket}/{prelabelled_key}"
    archived = archive_withdrawn(client, bucket, merged, present, ledger_key, run_id) if ledger_key else []
    if ledger_key:
        kept = {i["source"] for i in merged.images}
        stale = [d for d in merged.duplicates if d["duplicate_of"] not in kept]
        for d in stale:  # its original is no longer among the images: let the next run process it
            log.warning(
                "duplicate %s: its original %s is gone; it will be processed next run",
                d["source"],
                d["duplicate_of"],
            )
        live = [d for d in merged.duplicates if d["duplicate_of"] in kept]
        entries = ledger_mod.entries_from(merged.rejected, live, merged.params, merged.reject_params or None)
        entries.update(ledger_mod.uploaded_entries(merged.images, {k: v.etag for k, v in present.items()}))
        ledger_mod.save(client, bucket, ledger_key, entries)

    summary = {
        "bucket": bucket,
        "input_prefix": prefix,
        "images": [
            {
                "key": i["key"],
                "source": i["source"],
                "sha256": i["sha256"],
                "boxes_carried": int(i.get("boxes_carried", 0)),
                "labelled": bool(i.get("labelled")),
            }
            for i in merged.images
        ],
        "processed": merged.processed,
        "unchanged": merged.unchanged,
        "rejected": len(merged.rejected),
        "duplicates": len(merged.duplicates),
        "uploaded": merged.uploaded,
        "uploaded_bytes": merged.uploaded_bytes,
        "rejects_report": report_uri,
        "prelabelled_manifest": manifest_uri,
        "labelled": sum(1 for i in merged.images if i.get("labelled")),
        "archived": archived,
    }
    log.info(
        "images: %d usable in s3://%s/%s (%d processed, %d unchanged), %d rejected, %d duplicates, "
        "%d uploaded (%d bytes); %d labelled%s%s",
        len(merged.images),
        bucket,
        prefix,
        merged.processed,
        merged.unchanged,
        len(merged.rejected),
        len(merged.duplicates),
        merged.uploaded,
        merged.uploaded_bytes,
        summary["labelled"],
        f"; rejects report {report_uri}" if report_uri else "",
        f"; pre-labelled manifest {manifest_uri}" if manifest_uri else "",
    )
    if merged.plan_keys:  # the shards' photo lists, written by the plan step: done with them
        delete_plans(client, bucket, merged.plan_keys)
    for r in worst_rejects(merged.rejected):
        log.warning("rejected %s: %s", r["file"], r["reason"])
    for d in merged.duplicates[:WORST_SHOWN]:
        log.info("duplicate %s of %s", d["source"], d["duplicate_of"])
    for note in manifest_notes:
        log.warning("pre-labelled manifest: %s", note)
    for image in merged.images:
        for note in image.get("notes", []):
            log.info("%s: %s", image["source"], note)
    problem = verdict(merged, max_reject_share)
    if problem:
        raise ImagesUnusable(problem)
    return summary
