"""Where photos come from: a local folder or an ``s3://bucket/prefix``; listing, sidecars, fetching."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from deeplens_pipeline.layout import split_s3_uri

#: Extensions a photo may carry beyond what Pillow registers (pillow-heif, phones).
EXTRA_IMAGE_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
#: Pascal VOC annotation beside an image: same stem, this extension.
VOC_EXTENSION = ".xml"


def image_extensions() -> frozenset[str]:
    """Lower-case extensions treated as images (Pillow's registered ones plus HEIF/AVIF)."""
    from PIL import Image  # here, not at import: the DAG file's parse must not load Pillow

    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions()) | EXTRA_IMAGE_EXTENSIONS


@dataclass(frozen=True)
class SourceRoot:
    """A parsed ``image_source``: a local folder (``bucket`` None) or an S3 bucket and prefix."""

    uri: str
    bucket: str | None
    prefix: str

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def local_path(self, source: str) -> Path:
        """The local file of a source path (local roots only)."""
        if self.is_s3:
            raise ValueError(f"{self.uri} is not a local folder")
        return Path(self.prefix) / source


def parse_source(source: str) -> SourceRoot:
    """Parse ``image_source``: ``s3://bucket/prefix`` or a local folder path (which must exist)."""
    text = str(source or "").strip()
    if not text:
        raise ValueError("image_source is empty: give a local folder or an s3://bucket/prefix")
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise ValueError(f"image_source {source!r} has no bucket name")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return SourceRoot(uri=f"s3://{bucket}/{prefix}", bucket=bucket, prefix=prefix)
    if "://" in text:
        raise ValueError(f"image_source {source!r}: only local folders and s3:// prefixes are supported")
    path = Path(text).expanduser()
    if not path.is_dir():
        raise ValueError(f"image_source {source!r} is not an existing folder")
    return SourceRoot(uri=str(path.resolve()), bucket=None, prefix=str(path.resolve()))


@dataclass(frozen=True)
class SourceItem:
    """One candidate image: ``source`` is the path relative to a local root, or the S3 key."""

    source: str
    size: int
    etag: str | None = None
    voc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Listing:
    """What a source holds: image candidates and the files ignored (not images by extension)."""

    items: list[SourceItem]
    ignored: list[str]


def _split(names: dict[str, tuple[int, str | None]]) -> Listing:
    exts = image_extensions()
    lower = {n.lower(): n for n in names}
    items: list[SourceItem] = []
    ignored: list[str] = []
    for name in sorted(names):
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in exts or suffix == "":
            stem = name[: len(name) - len(suffix)] if suffix else name
            voc = lower.get((stem + VOC_EXTENSION).lower())
            size, etag = names[name]
            items.append(SourceItem(source=name, size=size, etag=etag, voc=voc))
        elif suffix != VOC_EXTENSION:
            ignored.append(name)
    return Listing(items=items, ignored=ignored)


def list_local(root: SourceRoot) -> Listing:
    """Every non-hidden file under a local root, sorted; images by extension (or none), the rest ignored."""
    base = Path(root.prefix)
    names: dict[str, tuple[int, str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            if not path.is_file():
                continue
            names[path.relative_to(base).as_posix()] = (path.stat().st_size, None)
    return _split(names)


def list_s3(client: Any, root: SourceRoot) -> Listing:
    """Every object under an S3 prefix (keys ending in ``/`` skipped); ``source`` is the full key."""
    names: dict[str, tuple[int, str | None]] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=root.bucket, Prefix=root.prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/") or PurePosixPath(key).name.startswith("."):
                continue
            names[key] = (int(obj["Size"]), obj.get("ETag", "").strip('"') or None)
    return _split(names)


def list_source(root: SourceRoot, client: Any | None = None) -> Listing:
    """List a local folder or (with a boto3 S3 client) an S3 prefix."""
    if root.is_s3:
        if client is None:
            raise ValueError(f"listing {root.uri} needs an S3 client")
        return list_s3(client, root)
    return list_local(root)


def read_text(uri: str, client: Any | None = None) -> str:
    """A small UTF-8 text file (a manifest) from a local path or, with an S3 client, ``s3://bucket/key``."""
    if uri.startswith("s3://"):
        if client is None:
            raise ValueError(f"reading {uri} needs an S3 client")
        bucket, key = split_s3_uri(uri)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return Path(uri).read_text(encoding="utf-8")
