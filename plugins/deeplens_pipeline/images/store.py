"""S3 side of the stage: output metadata, checksum look-ups, bounded-concurrency upload with retries.

Uploads go through boto3's transfer manager (``s3transfer.TransferManager``): one shared thread pool
of ``max_concurrency`` workers for all files, multipart for big ones. Transient errors are retried
with exponential backoff by botocore (give the client ``retries={"mode": "standard"}``); files whose
upload still failed are retried as a batch, ``rounds`` times, after a jittered, growing pause.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

# boto3 and botocore are imported by the functions that use them: the DAG file's operators import
# this module (through the ledger and collect modules), and parsing the DAG must not load boto3.

log = logging.getLogger(__name__)

META_SOURCE = "deeplens-source"
META_TRANSFORM = "deeplens-transform"
META_SHA256 = "deeplens-sha256"
META_PARAMS = "deeplens-params"
META_PIXELS = "deeplens-pixels"
META_ETAG = "deeplens-source-etag"
CONTENT_TYPE = "image/jpeg"
#: Printable ASCII except ``%`` stays as it is in ``deeplens-source``; the rest is percent-encoded.
_SAFE_SOURCE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def common_prefix(keys: list[str]) -> str:
    """The longest ``/``-ended prefix all keys share ("" when none)."""
    if not keys:
        return ""
    first, last = min(keys), max(keys)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[: first.rfind("/", 0, n) + 1]


def encode_source(source: str) -> str:
    """``deeplens-source`` value: the path, percent-encoded only where S3 metadata needs it."""
    return quote(source, safe=_SAFE_SOURCE_CHARS)


def decode_source(value: str) -> str:
    """Inverse of :func:`encode_source`."""
    return unquote(value)


def output_metadata(*, source: str, sha256: str, transform: str, params: str, pixels: str) -> dict[str, str]:
    """The S3 user metadata every output JPEG carries (see the package docstring)."""
    return {
        META_SOURCE: encode_source(source),
        META_TRANSFORM: transform,
        META_SHA256: sha256,
        META_PARAMS: params,
        META_PIXELS: pixels,
    }


def is_not_found(exc: ClientError) -> bool:
    """True when S3 answered that the object does not exist (GET says NoSuchKey, HEAD says 404)."""
    return str(exc.response.get("Error", {}).get("Code", "")) in {"404", "NoSuchKey", "NotFound"}


def read_object(client: Any, bucket: str, key: str) -> bytes | None:
    """The bytes of ``s3://bucket/key``, or None when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def head_metadata(
    client: Any, bucket: str, keys: Iterable[str], max_concurrency: int = 10
) -> dict[str, dict[str, str] | None]:
    """User metadata of each key (None when the object does not exist), looked up concurrently."""
    from botocore.exceptions import ClientError

    def head(key: str) -> tuple[str, dict[str, str] | None]:
        try:
            response = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return key, None
            raise
        return key, {k.lower(): v for k, v in response.get("Metadata", {}).items()}

    keys = list(keys)
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(keys)))) as pool:
        return dict(pool.map(head, keys))


@dataclass(frozen=True)
class Upload:
    """A local file bound for ``s3://bucket/key`` with its user metadata."""

    path: Path
    key: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = CONTENT_TYPE


@dataclass
class UploadReport:
    """Keys S3 confirmed, keys that kept failing (with the last error), bytes sent, retry rounds used."""

    uploaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    rounds: int = 0


def upload_files(
    client: Any,
    bucket: str,
    uploads: list[Upload],
    *,
    max_concurrency: int = 10,
    rounds: int = 3,
    backoff: float = 1.0,
    on_done: Callable[[Upload], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> UploadReport:
    """Upload files with boto3's transfer manager; retry the failed ones in up to ``rounds`` more rounds."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    report = UploadReport()
    pending = list(uploads)
    config = TransferConfig(max_concurrency=max(1, max_concurrency), use_threads=True)
    attempt = 0
    while pending:
        errors: dict[str, str] = {}
        with create_transfer_manager(client, config) as manager:
            futures = [
                (
                    item,
                    manager.upload(
                        str(item.path),
                        bucket,
                        item.key,
                        extra_args={"ContentType": item.content_type, "Metadata": dict(item.metadata)},
                    ),
                )
                for item in pending
            ]
            for item, future in futures:
                try:
                    future.result()
                except Exception as exc:
                    errors[item.key] = f"{type(exc).__name__}: {exc}"
                else:
                    report.uploaded.append(item.key)
                    report.bytes += item.path.stat().st_size
                    if on_done is not None:
                        on_done(item)
        pending = [item for item in pending if item.key in errors]
        if not pending:
            break
        if attempt >= rounds:
            report.failed.update(errors)
            break
        attempt += 1
        report.rounds = attempt
        pause = backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
        log.warning(
            "%d of %d uploads failed (e.g. %s); retry round %d/%d in %.1f s",
            len(pending),
            len(uploads),
            next(iter(errors.values())),
            attempt,
            rounds,
            pause,
        )
        sleep(pause)
    return report


def download_files(
    client: Any,
    bucket: str,
    pairs: list[tuple[str, Path]],
    *,
    max_concurrency: int = 10,
    listed: Mapping[str, Listed] | None = None,
) -> dict[str, str]:
    """Download ``(key, path)`` pairs with the transfer manager; returns ``{key: error}`` for failures.

    ``listed`` (size and ETag from a listing) spares the HEAD request the transfer manager otherwise
    sends before each download; it is used only under the multipart threshold, where the download
    is one GET that reads the whole object whatever its size has become since.
    """
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    errors: dict[str, str] = {}
    if not pairs:
        return errors
    config = TransferConfig(max_concurrency=max(1, max_concurrency), use_threads=True)
    listed = listed or {}
    with create_transfer_manager(client, config) as manager:
        futures = []
        for key, path in pairs:
            path.parent.mkdir(parents=True, exist_ok=True)
            known = listed.get(key)
            small = known is not None and known.etag and 0 <= known.size < config.multipart_threshold
            subscribers = [_Listed(known)] if small else None
            futures.append((key, manager.download(bucket, key, str(path), subscribers=subscribers)))
        for key, future in futures:
            try:
                future.result()
            except Exception as exc:
                errors[key] = f"{type(exc).__name__}: {exc}"
    return errors


class _Listed:
    """An s3transfer subscriber giving a download the size and ETag a listing showed, so no HEAD
    request is sent for it."""

    def __init__(self, listed: Listed) -> None:
        self.listed = listed

    def on_queued(self, future: Any, **_: Any) -> None:
        future.meta.provide_transfer_size(self.listed.size)
        future.meta.provide_object_etag(f'"{self.listed.etag}"')

    def on_progress(self, **_: Any) -> None:
        pass

    def on_done(self, **_: Any) -> None:
        pass


def delete_keys(client: Any, bucket: str, keys: list[str], max_concurrency: int = 8) -> int:
    """Delete objects, one DeleteObject request each (the IAM action ``s3:DeleteObject``, as for
    every other delete of the pipeline), a few at a time; returns how many."""
    if not keys:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(keys)))) as pool:
        list(pool.map(lambda key: client.delete_object(Bucket=bucket, Key=key), keys))
    return len(keys)


@dataclass(frozen=True)
class Listed:
    """One object of a listing."""

    size: int
    etag: str


def list_objects(client: Any, bucket: str, prefix: str) -> dict[str, Listed]:
    """``{key: Listed(size, etag)}`` of every object under ``prefix`` (1 request per 1,000 keys)."""
    found: dict[str, Listed] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = Listed(size=int(obj["Size"]), etag=str(obj.get("ETag", "")).strip('"'))
    return found


def list_keys(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """``{key: size}`` of every object under ``prefix``."""
    return {key: listed.size for key, listed in list_objects(client, bucket, prefix).items()}


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file: what S3 reports as the ETag of a single-part upload."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def put_text_if_changed(
    client: Any, bucket: str, key: str, text: str, content_type: str = "text/plain"
) -> bool:
    """Write a small text object unless S3 already holds exactly these bytes; True when written."""
    body = text.encode("utf-8")
    if read_object(client, bucket, key) == body:
        return False
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return True


def sync_files(
    client: Any,
    bucket: str,
    uploads: list[Upload],
    *,
    max_concurrency: int = 10,
    rounds: int = 3,
    backoff: float = 1.0,
) -> tuple[UploadReport, list[str]]:
    """Upload only the files S3 does not already hold, checked by checksum; ``(report, skipped keys)``.

    One listing of the keys' common prefix gives every ETag: a key that is absent is sent at once, a
    single-part object whose ETag is the local file's MD5 is skipped, and a multipart object (its
    ETag is no MD5) is compared on ``deeplens-sha256`` with a HEAD request.
    """
    prefix = common_prefix([u.key for u in uploads])
    listed = list_objects(client, bucket, prefix) if uploads else {}
    skipped: list[str] = []
    multipart: list[Upload] = []
    for u in uploads:
        found = listed.get(u.key)
        if found is None or found.size != u.path.stat().st_size:
            continue
        if "-" in found.etag:
            multipart.append(u)
        elif found.etag == md5_file(u.path):
            skipped.append(u.key)
    if multipart:
        heads = head_metadata(client, bucket, [u.key for u in multipart], max_concurrency)
        for u in multipart:
            remote = (heads.get(u.key) or {}).get(META_SHA256)
            if remote is not None and remote == u.metadata.get(META_SHA256):
                skipped.append(u.key)
    done = set(skipped)
    report = upload_files(
        client,
        bucket,
        [u for u in uploads if u.key not in done],
        max_concurrency=max_concurrency,
        rounds=rounds,
        backoff=backoff,
    )
    return report, skipped
