"""Images stage as Airflow tasks: plan shards, preprocess-and-upload each shard (dynamic task mapping),
collect.

``build_images_group(...)`` wires the three tasks in a TaskGroup ``images``::

    plan_shards -> preprocess_upload.expand(shard=plan_shards.output) -> collect

The plan lists the source, the output prefix and the ledger once per run, and writes each shard's
photo list (with what S3 already holds for each photo) to ``s3://<bucket>/state/plans/<run>/``: the
XCom carries only those keys, and a shard lists nothing. Each mapped task works in its own temporary
folder and talks only to S3, so shards may run on different MWAA workers; within a task, files are
decoded on a process pool. Every templated field
accepts a Jinja string (``"{{ params.image_shape }}"``), rendered natively or as text. Parsing this
module (and so the DAG file) loads no image library and no AWS client library: Pillow, boto3 and
the provider's S3 hook are imported when a task runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deeplens_pipeline.airflow_compat import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    TaskGroup,
    TriggerRule,
    XComArg,
)
from deeplens_pipeline.deploy.inference_settings import parse_labels
from deeplens_pipeline.images import ledger as ledger_mod
from deeplens_pipeline.images.boxes import LabelSet, match_manifest, parse_manifest
from deeplens_pipeline.images.collect import DEFAULT_REPORTS_PREFIX, ImagesUnusable, finish
from deeplens_pipeline.images.geometry import IMAGE_SHAPES
from deeplens_pipeline.images.naming import normalise_prefix
from deeplens_pipeline.images.plan import PLANS_PREFIX, plan_shards, plans_prefix, store_specs, survey
from deeplens_pipeline.images.progress import ProgressLog
from deeplens_pipeline.images.rejects import DEFAULT_DECODE_MEMORY_MB, DecodeLimits
from deeplens_pipeline.images.sources import list_source, parse_source, read_text
from deeplens_pipeline.images.store import (
    META_SHA256,
    META_SOURCE,
    decode_source,
    head_metadata,
    list_keys,
)
from deeplens_pipeline.layout import BucketLayout
from deeplens_pipeline.operators.base import DEFAULT_CONN_ID, ParamsSerializedOnce

if TYPE_CHECKING:
    from deeplens_pipeline.images.shard import ShardSettings

BUCKET_PREFIX = "deeplens-"


# ---------------------------------------------------------------- rendered-value coercion


def as_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer parameter from a native or rendered-text value; errors name the parameter."""
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise AirflowFailException(f"{name} must be an integer, got {value!r}") from exc
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise AirflowFailException(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def as_float(name: str, value: Any, minimum: float, maximum: float) -> float:
    """A number parameter in ``[minimum, maximum]``."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise AirflowFailException(f"{name} must be a number, got {value!r}") from exc
    if not minimum <= number <= maximum:
        raise AirflowFailException(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def as_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """None/""/"None" -> None, else an integer >= minimum."""
    if value is None or (isinstance(value, str) and value.strip() in {"", "None", "null"}):
        return None
    return as_int(name, value, minimum)


def as_str_list(name: str, value: Any) -> list[str] | None:
    """A list of strings from a list, a JSON/Python list literal or comma-separated text; None if empty."""
    if not value or (isinstance(value, str) and value.strip() in {"", "None", "null", "[]"}):
        return None
    try:
        return list(parse_labels(value))
    except ValueError as exc:
        raise AirflowFailException(f"{name} must be a list of strings: {exc}") from exc


def as_optional_str(value: Any) -> str | None:
    """None for None, "", "None"; else the stripped text."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in {"", "None", "null"} else text


def check_bucket(bucket: Any) -> str:
    """The output bucket name; DeepLens reads only buckets named ``deeplens-...``."""
    name = str(bucket or "").strip()
    if not name.startswith(BUCKET_PREFIX):
        raise AirflowFailException(
            f"bucket must begin with {BUCKET_PREFIX!r} (DeepLens reads only those), got {name!r}"
        )
    return name


def s3_client(aws_conn_id: str | None, region_name: str | None = None, max_pool: int = 10) -> Any:
    """A boto3 S3 client from the provider's S3Hook: the connection's endpoint_url and credentials,
    standard-mode retries with backoff and a connection pool sized for ``max_pool`` threads. Settings
    the connection's extra gives (``config_kwargs``) win over these defaults."""
    # Imported here, when a task runs: parsing the DAG file must not load boto3.
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config

    ours = Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=max(10, max_pool + 2))
    hook = S3Hook(aws_conn_id=aws_conn_id, region_name=region_name)
    theirs = hook.conn_config.botocore_config
    return hook.get_client_type(
        region_name=hook.region_name, config=ours.merge(theirs) if theirs is not None else ours
    )


# ---------------------------------------------------------------- operators


class PlanImageShardsOperator(ParamsSerializedOnce, BaseOperator):
    """List the photo source and return deterministic, JSON-serialisable shard specs.

    :param source: local folder on the worker or ``s3://bucket/prefix``; empty means "no new photos"
        (returns no shard; collect then reports what the input prefix already holds).
    :param bucket: output bucket (``deeplens-...``); an S3 source must not overlap its input prefix.
    :param manifest: optional Ground Truth manifest (local path or s3 URI) of existing boxes;
        lines are matched to photos by file name.
    :param manifest_label_attribute: the boxes' attribute in that manifest; None finds the first
        object-detection attribute of each line.
    :param shard_size: photos per mapped task (grown to keep at most ``max_shards`` tasks).
    :param ledger_key: the ledger's key (None: no ledger, every output's metadata is read with HEAD).
    :param plans_prefix: where the shards' photo lists go (the collect step deletes them).
    """

    template_fields: Sequence[str] = (
        "source",
        "bucket",
        "input_prefix",
        "manifest",
        "manifest_label_attribute",
        "shard_size",
        "max_shards",
        "ledger_key",
        "plans_prefix",
        "region_name",
    )
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        source: str,
        bucket: str,
        input_prefix: str = "input/",
        manifest: str | None = None,
        manifest_label_attribute: str | None = None,
        shard_size: int | str = 256,
        max_shards: int | str = 64,
        ledger_key: str | None = ledger_mod.DEFAULT_LEDGER_KEY,
        plans_prefix: str = PLANS_PREFIX,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.bucket = bucket
        self.input_prefix = input_prefix
        self.manifest = manifest
        self.manifest_label_attribute = manifest_label_attribute
        self.shard_size = shard_size
        self.max_shards = max_shards
        self.ledger_key = ledger_key
        self.plans_prefix = plans_prefix
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> list[dict[str, Any]]:
        bucket = check_bucket(self.bucket)
        prefix = normalise_prefix(str(self.input_prefix or ""))
        source = as_optional_str(self.source)
        if source is None:
            self.log.info("image_source is empty: no new photos, only what s3://%s/%s holds", bucket, prefix)
            return []
        try:
            root = parse_source(source)
        except ValueError as exc:
            raise AirflowFailException(f"image_source: {exc}") from exc
        if (
            root.is_s3
            and root.bucket == bucket
            and (root.prefix.startswith(prefix) or prefix.startswith(root.prefix))
        ):
            raise AirflowFailException(
                f"image_source {root.uri} overlaps the output prefix s3://{bucket}/{prefix}: the originals "
                "would be overwritten; keep the photos under another prefix"
            )
        client = s3_client(self.aws_conn_id, as_optional_str(self.region_name))
        listing = list_source(root, client)
        labels: dict[str, LabelSet] = {}
        manifest = as_optional_str(self.manifest)
        if manifest:
            try:
                entries = parse_manifest(
                    read_text(manifest, client), manifest, as_optional_str(self.manifest_label_attribute)
                )
            except (ValueError, OSError) as exc:  # LabelsError, a bad URI, not UTF-8, no such file
                raise AirflowFailException(f"manifest: {exc}") from exc
            labels = match_manifest(entries, [i.source for i in listing.items])
            self.log.info(
                "manifest %s: %d line(s) with boxes, %d matched a photo", manifest, len(entries), len(labels)
            )
        known = survey(client, bucket, prefix, as_optional_str(self.ledger_key))
        specs = plan_shards(
            root,
            listing,
            input_prefix=prefix,
            shard_size=as_int("shard_size", self.shard_size, 1),
            max_shards=as_int("max_shards", self.max_shards, 1, 1024),
            labels=labels,
            known=known,
        )
        where = plans_prefix(str(context.get("run_id") or "manual"), str(self.plans_prefix or PLANS_PREFIX))
        stored = store_specs(specs, client, bucket, where)
        self.log.info(
            "%s: %d photo(s) in %d shard(s) (lists in s3://%s/%s); %d already in s3://%s/%s; "
            "%d other file(s) ignored%s",
            root.uri,
            len(listing.items),
            len(specs),
            bucket,
            where,
            len(known.outputs),
            bucket,
            prefix,
            len(listing.ignored),
            f" (e.g. {', '.join(listing.ignored[:5])})" if listing.ignored else "",
        )
        return stored


class PreprocessUploadOperator(ParamsSerializedOnce, BaseOperator):
    """Preprocess one shard on a process pool in a temporary folder and upload it (idempotent).

    Mapped with ``.partial(...).expand(shard=plan.output)``. Returns the shard result (see
    :func:`deeplens_pipeline.images.shard.run_shard`); fails only when uploads keep failing after
    the retry rounds, so the task's own retry resumes where it stopped.

    :param decode_memory_mb: memory one photo may take to decode, in MiB (what decoding it will
        really cost, from its header: format, mode, draft scale); a photo over it is rejected as a
        decompression bomb with the cost in its reason. Each of the ``processes`` decodes at once.
    """

    # ``shard`` is not templated: it comes resolved from expand(), and file names inside it must
    # never be read as Jinja.
    template_fields: Sequence[str] = (
        "bucket",
        "image_shape",
        "resize_mode",
        "pad_color",
        "quality",
        "processes",
        "upload_concurrency",
        "upload_retries",
        "decode_memory_mb",
        "min_visibility",
        "ledger_key",
        "region_name",
    )
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        shard: dict[str, Any] | str,
        bucket: str,
        image_shape: int | str = 512,
        resize_mode: str = "letterbox",
        pad_color: str = "#000000",
        quality: int | str = 90,
        processes: int | str | None = None,
        upload_concurrency: int | str = 16,
        upload_retries: int | str = 3,
        decode_memory_mb: int | str = DEFAULT_DECODE_MEMORY_MB,
        min_visibility: float | str = 0.0,
        ledger_key: str | None = ledger_mod.DEFAULT_LEDGER_KEY,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shard = shard
        self.bucket = bucket
        self.image_shape = image_shape
        self.resize_mode = resize_mode
        self.pad_color = pad_color
        self.quality = quality
        self.processes = processes
        self.upload_concurrency = upload_concurrency
        self.upload_retries = upload_retries
        self.decode_memory_mb = decode_memory_mb
        self.min_visibility = min_visibility
        self.ledger_key = ledger_key
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.progress_interval = progress_interval

    def settings(self) -> ShardSettings:
        """The rendered parameters, checked."""
        from deeplens_pipeline.images.preprocess import PreprocessOptions
        from deeplens_pipeline.images.shard import ShardSettings

        size = as_int("image_shape", self.image_shape)
        if size not in IMAGE_SHAPES:
            raise AirflowFailException(f"image_shape must be one of {IMAGE_SHAPES}, got {size}")
        try:
            options = PreprocessOptions(
                size=size,
                mode=str(self.resize_mode).strip(),
                pad_colour=self.pad_color,
                quality=as_int("quality", self.quality, 1, 100),
                limits=DecodeLimits(memory_mb=as_int("decode_memory_mb", self.decode_memory_mb, 16, 65536)),
            )
        except ValueError as exc:
            raise AirflowFailException(f"image options: {exc}") from exc
        return ShardSettings(
            options=options,
            processes=as_optional_int("processes", self.processes),
            upload_concurrency=as_int("upload_concurrency", self.upload_concurrency, 1, 256),
            upload_rounds=as_int("upload_retries", self.upload_retries, 0, 20),
            min_visibility=as_float("min_visibility", self.min_visibility, 0.0, 1.0),
            ledger_key=as_optional_str(self.ledger_key),
        )

    def execute(self, context: Any) -> dict[str, Any]:
        shard = json.loads(self.shard) if isinstance(self.shard, str) else self.shard
        if not isinstance(shard, dict) or ("items" not in shard and "items_key" not in shard):
            raise AirflowFailException(
                f"shard must be a shard spec from plan_shards, got {str(shard)[:200]!r}"
            )
        bucket = check_bucket(self.bucket)
        settings = self.settings()
        client = s3_client(self.aws_conn_id, as_optional_str(self.region_name), settings.upload_concurrency)
        self.log.info(
            "shard %s/%s: %d photo(s) from %s -> s3://%s (options %s)",
            shard.get("index", 0) + 1,
            shard.get("count", 1),
            len(shard["items"]) if "items" in shard else shard.get("photos", "?"),
            shard.get("source"),
            bucket,
            settings.options.fingerprint(),
        )
        from deeplens_pipeline.images.shard import ShardFailed, run_shard

        try:
            result = run_shard(
                shard,
                bucket=bucket,
                client=client,
                settings=settings,
                progress=ProgressLog(self.log, self.progress_interval),
            )
        except ShardFailed as exc:
            raise AirflowException(str(exc)) from exc
        except ValueError as exc:
            raise AirflowFailException(f"shard {shard.get('index')}: {exc}") from exc
        self.log.info(
            "shard %s: %d image(s) (%d processed, %d unchanged), %d rejected, %d duplicate(s), %d uploaded",
            result["shard"],
            len(result["images"]),
            result["processed"],
            result["unchanged"],
            len(result["rejected"]),
            len(result["duplicates"]),
            result["uploaded"],
        )
        return result


class CollectImagesOperator(ParamsSerializedOnce, BaseOperator):
    """Merge shard results, write the rejects report and pre-labelled manifest, decide pass or fail.

    Returns ``{"bucket", "input_prefix", "images": [{"key", "source", "sha256", "boxes_carried",
    "labelled"}], "processed", "unchanged", "rejected", "duplicates", "uploaded", "uploaded_bytes",
    "rejects_report", "prelabelled_manifest", "labelled"}``. Fails when nothing usable is left or
    the reject share passes ``max_reject_share``, naming the worst files. With an empty ``source``
    it reports the images the input prefix already holds.
    """

    template_fields: Sequence[str] = (
        "results",
        "source",
        "bucket",
        "input_prefix",
        "image_shape",
        "max_reject_share",
        "classes",
        "label_attribute",
        "prelabelled_key",
        "reports_prefix",
        "ledger_key",
        "region_name",
    )
    ui_color = "#e8f4e8"

    def __init__(
        self,
        *,
        results: Any,
        bucket: str,
        source: str | None = None,
        input_prefix: str = "input/",
        image_shape: int | str = 512,
        max_reject_share: float | str = 0.2,
        classes: list[str] | str | None = None,
        label_attribute: str = "bounding-box",
        prelabelled_key: str | None = BucketLayout.prelabelled_key,
        reports_prefix: str = DEFAULT_REPORTS_PREFIX,
        ledger_key: str | None = ledger_mod.DEFAULT_LEDGER_KEY,
        aws_conn_id: str | None = DEFAULT_CONN_ID,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.NONE_FAILED)
        super().__init__(**kwargs)
        self.results = results
        self.source = source
        self.bucket = bucket
        self.input_prefix = input_prefix
        self.image_shape = image_shape
        self.max_reject_share = max_reject_share
        self.classes = classes
        self.label_attribute = label_attribute
        self.prelabelled_key = prelabelled_key
        self.reports_prefix = reports_prefix
        self.ledger_key = ledger_key
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def _results(self) -> list[dict[str, Any]]:
        value = self.results
        if value is None:
            return []
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else []
        if isinstance(value, dict):
            return [value]
        if hasattr(value, "__len__") and hasattr(value, "__getitem__"):
            # a mapped task's lazy XCom sequence: index it (iterating probes one past the end)
            return [r for r in (value[i] for i in range(len(value))) if r is not None]
        return [r for r in value if r is not None]

    def execute(self, context: Any) -> dict[str, Any]:
        bucket = check_bucket(self.bucket)
        prefix = normalise_prefix(str(self.input_prefix or ""))
        client = s3_client(self.aws_conn_id, as_optional_str(self.region_name))
        results = self._results()
        if not results and as_optional_str(self.source) is None:
            results = [self._existing(client, bucket, prefix)]
        try:
            return finish(
                results,
                client=client,
                bucket=bucket,
                input_prefix=prefix,
                run_id=str(context.get("run_id") or "manual"),
                size=as_int("image_shape", self.image_shape),
                max_reject_share=as_float("max_reject_share", self.max_reject_share, 0.0, 1.0),
                labels=as_str_list("classes", self.classes),
                label_attribute=str(self.label_attribute or "bounding-box"),
                prelabelled_key=as_optional_str(self.prelabelled_key),
                reports_prefix=str(self.reports_prefix or DEFAULT_REPORTS_PREFIX),
                ledger_key=as_optional_str(self.ledger_key),
            )
        except ImagesUnusable as exc:
            raise AirflowFailException(f"images: {exc}") from exc

    def _existing(self, client: Any, bucket: str, prefix: str) -> dict[str, Any]:
        """A pseudo shard result for the JPEGs already under the input prefix (no new photos)."""
        keys = sorted(k for k in list_keys(client, bucket, prefix) if k.lower().endswith((".jpg", ".jpeg")))
        metadata = head_metadata(client, bucket, keys)
        images = []
        for key in keys:
            meta = metadata.get(key) or {}
            images.append(
                {
                    "key": key,
                    "source": decode_source(meta.get(META_SOURCE, key)),
                    "sha256": meta.get(META_SHA256, ""),
                    "status": "unchanged",
                    "boxes_carried": 0,
                    "labelled": False,
                }
            )
        self.log.info("no image_source: %d image(s) already under s3://%s/%s", len(images), bucket, prefix)
        return {"images": images}


# ---------------------------------------------------------------- the task group


def build_images_group(
    *,
    source: str,
    bucket: str,
    aws_conn_id: str | None = DEFAULT_CONN_ID,
    image_shape: int | str = 512,
    input_prefix: str = "input/",
    resize_mode: str = "letterbox",
    pad_color: str = "#000000",
    quality: int | str = 90,
    max_reject_share: float | str = 0.2,
    label_attribute: str = "bounding-box",
    classes: list[str] | str | None = None,
    manifest: str | None = None,
    manifest_label_attribute: str | None = None,
    shard_size: int | str = 256,
    max_shards: int | str = 64,
    processes: int | str | None = None,
    upload_concurrency: int | str = 16,
    decode_memory_mb: int | str = DEFAULT_DECODE_MEMORY_MB,
    region_name: str | None = None,
    group_id: str = "images",
) -> XComArg:
    """Create ``plan_shards -> preprocess_upload (mapped) -> collect`` in a TaskGroup ``group_id``.

    Returns the collect task's output (its summary dict). Every argument may be a Jinja string.
    """
    with TaskGroup(group_id=group_id, tooltip="Preprocess photos and upload them to S3"):
        plan = PlanImageShardsOperator(
            task_id="plan_shards",
            source=source,
            bucket=bucket,
            input_prefix=input_prefix,
            manifest=manifest,
            manifest_label_attribute=manifest_label_attribute,
            shard_size=shard_size,
            max_shards=max_shards,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
        )
        shards = PreprocessUploadOperator.partial(
            task_id="preprocess_upload",
            bucket=bucket,
            image_shape=image_shape,
            resize_mode=resize_mode,
            pad_color=pad_color,
            quality=quality,
            processes=processes,
            upload_concurrency=upload_concurrency,
            decode_memory_mb=decode_memory_mb,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
        ).expand(shard=plan.output)
        collect = CollectImagesOperator(
            task_id="collect",
            results=shards.output,
            source=source,
            bucket=bucket,
            input_prefix=input_prefix,
            image_shape=image_shape,
            max_reject_share=max_reject_share,
            classes=classes,
            label_attribute=label_attribute,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
        )
        plan >> shards >> collect
    return collect.output
