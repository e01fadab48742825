"""Command line: preprocess a folder or S3 prefix of photos and upload them, with a progress bar.

    python -m deeplens_pipeline.images SOURCE --bucket deeplens-my-bucket [--endpoint-url URL] ...
    python -m deeplens_pipeline.images SOURCE --out-dir preview/          # no S3: write JPEGs locally

The S3 mode runs exactly what the Airflow tasks run (plan, every shard, collect) and prints the
summary; a rerun over the same photos decodes and uploads nothing. Exit status: 0 done, 1 the
stage failed (nothing usable, too many rejects, uploads failing), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from deeplens_pipeline.images.boxes import match_manifest, parse_manifest
from deeplens_pipeline.images.collect import ImagesUnusable, finish, rejects_csv, worst_rejects
from deeplens_pipeline.images.ledger import DEFAULT_LEDGER_KEY
from deeplens_pipeline.images.naming import output_names
from deeplens_pipeline.images.plan import plan_shards, survey
from deeplens_pipeline.images.preprocess import PreprocessOptions
from deeplens_pipeline.images.progress import ProgressCallback, ProgressLog
from deeplens_pipeline.images.rejects import DEFAULT_DECODE_MEMORY_MB, DecodeLimits
from deeplens_pipeline.images.shard import ShardFailed, ShardSettings, preprocess_many, run_shard
from deeplens_pipeline.images.sources import list_source, parse_source, read_text

log = logging.getLogger("deeplens_pipeline.images")


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(
        prog="python -m deeplens_pipeline.images",
        description="Make photos square RGB JPEGs for DeepLens object detection and upload them to S3.",
    )
    p.add_argument("source", help="local folder or s3://bucket/prefix of photos")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--bucket", help="output bucket (must begin with deeplens-)")
    where.add_argument("--out-dir", type=Path, help="write JPEGs to this folder instead of S3 (a preview)")
    p.add_argument("--input-prefix", default="input/", help="key prefix of the output JPEGs (default input/)")
    p.add_argument("--endpoint-url", help="S3 endpoint (the emulator's URL); default: AWS")
    p.add_argument("--region", default=None, help="AWS region")
    p.add_argument("--profile", default=None, help="AWS profile")
    p.add_argument(
        "--size", type=int, default=512, help="output side in pixels: 300, 480 or 512 (default 512)"
    )
    p.add_argument(
        "--mode", choices=["letterbox", "crop"], default="letterbox", help="make square by padding or crop"
    )
    p.add_argument(
        "--pad-colour", "--pad-color", default="#000000", help="letterbox colour (default #000000)"
    )
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    p.add_argument(
        "--decode-memory-mb",
        type=int,
        default=DEFAULT_DECODE_MEMORY_MB,
        help=f"memory one photo may take to decode, in MiB (default {DEFAULT_DECODE_MEMORY_MB}); "
        "a photo that would need more is rejected as a decompression bomb",
    )
    p.add_argument("--manifest", help="Ground Truth manifest with existing boxes (path or s3 URI)")
    p.add_argument(
        "--manifest-label-attribute", default=None, help="boxes attribute in --manifest (default: found)"
    )
    p.add_argument(
        "--label-attribute", default="bounding-box", help="attribute written (default bounding-box)"
    )
    p.add_argument("--classes", default=None, help="comma-separated class names, in class_id order")
    p.add_argument("--max-reject-share", type=float, default=0.2, help="fail above this share of rejects")
    p.add_argument("--processes", type=int, default=None, help="decoder processes (default: all cores)")
    p.add_argument("--shard-size", type=int, default=256, help="photos per shard (default 256)")
    p.add_argument("--concurrency", type=int, default=16, help="parallel uploads (default 16)")
    p.add_argument("--run-id", default="cli", help="names the rejects report folder (default cli)")
    p.add_argument("--no-progress", action="store_true", help="log progress lines instead of a progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


class RichProgress:
    """A :data:`ProgressCallback` drawing one rich progress bar per stage (preprocess, upload)."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)
        if done == 0:
            self.progress.reset(self.tasks[stage], total=total)


def progress_callback(stack: ExitStack, plain: bool) -> ProgressCallback:
    """A rich progress bar on a terminal; progress log lines otherwise."""
    if not plain and sys.stderr.isatty():
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
        except ImportError:
            pass
        else:
            bar = Progress(
                TextColumn("{task.description:>10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            stack.enter_context(bar)
            return RichProgress(bar)
    return ProgressLog(log, interval=5.0)


def s3_client(args: argparse.Namespace, max_pool: int) -> Any:
    """A boto3 S3 client with standard retries and a pool sized for the upload threads."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    config = Config(
        retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=max(10, max_pool + 2)
    )
    return session.client("s3", endpoint_url=args.endpoint_url, config=config)


def run_to_s3(
    args: argparse.Namespace, options: PreprocessOptions, progress: ProgressCallback
) -> dict[str, Any]:
    """Plan, run every shard, collect: what the Airflow task group does."""
    if not args.bucket.startswith("deeplens-"):
        raise ValueError(f"--bucket must begin with 'deeplens-', got {args.bucket!r}")
    client = s3_client(args, args.concurrency)
    root = parse_source(args.source)
    listing = list_source(root, client)
    labels = {}
    if args.manifest:
        entries = parse_manifest(
            read_text(args.manifest, client), args.manifest, args.manifest_label_attribute
        )
        labels = match_manifest(entries, [i.source for i in listing.items])
    known = survey(client, args.bucket, args.input_prefix, DEFAULT_LEDGER_KEY)  # once for every shard
    specs = plan_shards(
        root,
        listing,
        input_prefix=args.input_prefix,
        shard_size=args.shard_size,
        labels=labels,
        known=known,
    )
    log.info(
        "%s: %d photo(s) in %d shard(s), %d other file(s) ignored%s",
        root.uri,
        len(listing.items),
        len(specs),
        len(listing.ignored),
        f" (e.g. {', '.join(listing.ignored[:5])})" if listing.ignored else "",
    )
    settings = ShardSettings(
        options=options,
        processes=args.processes,
        upload_concurrency=args.concurrency,
        ledger_key=DEFAULT_LEDGER_KEY,
    )
    results = []
    for spec in specs:
        if len(specs) > 1:
            log.info("shard %d/%d: %d photo(s)", spec["index"] + 1, len(specs), len(spec["items"]))
        results.append(
            run_shard(spec, bucket=args.bucket, client=client, settings=settings, progress=progress)
        )
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    return finish(
        results,
        client=client,
        bucket=args.bucket,
        input_prefix=args.input_prefix,
        run_id=args.run_id,
        size=options.size,
        max_reject_share=args.max_reject_share,
        labels=classes,
        label_attribute=args.label_attribute,
    )


def run_to_folder(
    args: argparse.Namespace, options: PreprocessOptions, progress: ProgressCallback
) -> dict[str, Any]:
    """Preview: preprocess a local folder into ``--out-dir`` (+ ``transforms.jsonl``, ``rejects.csv``)."""
    root = parse_source(args.source)
    if root.is_s3:
        raise ValueError("--out-dir works on a local source folder only")
    listing = list_source(root)
    readable = [i for i in listing.items if not i.refused]
    names = output_names(i.source for i in readable)
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i.source, str(root.local_path(i.source)), str(out / names[i.source])) for i in readable]
    outcomes = preprocess_many(jobs, options, args.processes, progress)
    rejected = [
        {"file": source, "kind": o["kind"], "reason": o["reason"]}
        for source, o in outcomes.items()
        if o["status"] != "ok"
    ] + [
        {"file": i.source, "kind": i.refused.split(":", 1)[0], "reason": i.refused}
        for i in listing.items
        if i.refused
    ]
    with (out / "transforms.jsonl").open("w") as fh:
        for source in sorted(outcomes):
            o = outcomes[source]
            if o["status"] == "ok":
                fh.write(
                    json.dumps({"file": names[source], "source": source, "transform": o["transform"]}) + "\n"
                )
    (out / "rejects.csv").write_text(rejects_csv(worst_rejects(rejected, limit=len(rejected))))
    return {
        "out_dir": str(out),
        "images": sum(1 for o in outcomes.values() if o["status"] == "ok"),
        "rejected": len(rejected),
        "rejects_report": str(out / "rejects.csv"),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        options = PreprocessOptions(
            size=args.size,
            mode=args.mode,
            pad_colour=args.pad_colour,
            quality=args.quality,
            limits=DecodeLimits(memory_mb=args.decode_memory_mb),
        )
        with ExitStack() as stack:
            progress = progress_callback(stack, args.no_progress)
            summary = (
                run_to_folder(args, options, progress) if args.out_dir else run_to_s3(args, options, progress)
            )
    except (ValueError, OSError) as exc:  # LabelsError is a ValueError; OSError: e.g. no such --manifest
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ImagesUnusable, ShardFailed) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for key, value in summary.items():
            if not isinstance(value, list):
                print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
