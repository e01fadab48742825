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
    """One candidate image: ``source`` is the path relative to a local root, or the S3 key.

    ``refused`` is set (a reject reason) for an entry that is not read at all: a symbolic link that
    leads out of the source folder.
    """

    source: str
    size: int
    etag: str | None = None
    voc: str | None = None
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Listing:
    """What a source holds: image candidates (refused ones among them, see :class:`SourceItem`) and
    the files ignored: those without an image extension (README, LICENSE, notes.txt)."""

    items: list[SourceItem]
    ignored: list[str]


def _split(names: dict[str, tuple[int, str | None]], refused: dict[str, str] | None = None) -> Listing:
    exts = image_extensions()
    refused = refused or {}
    lower = {n.lower(): n for n in names}
    items: list[SourceItem] = []
    ignored: list[str] = []
    for name in sorted(names.keys() | refused.keys()):
        suffix = PurePosixPath(name).suffix.lower()
        if name in refused and (suffix in exts or refused[name].startswith(_FOLDER_LINK)):
            items.append(SourceItem(source=name, size=0, refused=refused[name]))
        elif name in refused:
            ignored.append(name)
        elif suffix in exts:
            voc = lower.get((name[: len(name) - len(suffix)] + VOC_EXTENSION).lower())
            size, etag = names[name]
            items.append(SourceItem(source=name, size=size, etag=etag, voc=voc))
        elif suffix != VOC_EXTENSION:
            ignored.append(name)
    return Listing(items=items, ignored=ignored)


_FOLDER_LINK = "outside-source: a link to a folder"


def outside_reason(root: Path, path: Path) -> str | None:
    """Why ``path`` (under the resolved ``root``) must not be read: it is, or passes through, a
    symbolic link that leads out of the source folder; None when it stays inside."""
    target = Path(os.path.realpath(path))
    if target == root or root in target.parents:
        return None
    what = "a link to a folder" if target.is_dir() else "a symbolic link"
    return f"outside-source: {what} that leads out of the source folder (to {target}); not read"


def list_local(root: SourceRoot) -> Listing:
    """Every non-hidden file under a local root, sorted; images by extension, the rest ignored.

    Symbolic links are followed only while they stay inside the root: a link to a file or a folder
    elsewhere is refused (its reason names the target) and never read; links to folders inside the
    root are not walked (their files are listed where they really are).
    """
    base = Path(root.prefix)
    real = Path(os.path.realpath(base))
    names: dict[str, tuple[int, str | None]] = {}
    refused: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for d in list(dirnames):
            path = Path(dirpath) / d
            if not d.startswith(".") and path.is_symlink():
                reason = outside_reason(real, path)
                if reason:
                    refused[path.relative_to(base).as_posix()] = reason
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            name = path.relative_to(base).as_posix()
            if path.is_symlink() and (reason := outside_reason(real, path)):
                refused[name] = reason
            elif path.is_file():
                names[name] = (path.stat().st_size, None)
    return _split(names, refused)


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
