"""Images stage (seed steps 1-2): camera photos -> square RGB JPEGs in ``s3://<bucket>/<input_prefix>``.

Listing: files without an image extension (README, LICENSE) are ignored, not rejected; a symbolic
link that leads out of the source folder is refused (``outside-source``) and never read.

Pipeline per file: validate (zero bytes, not an image, truncated, decompression bomb: more memory
to decode than ``decode_memory_mb``, reckoned from the header by format, mode and draft scale;
absurd dimensions, unsupported mode -> a ``(file, reason)`` reject), decode (JPEGs in Pillow's
draft mode at the smallest DCT scale that still covers the output, then one LANCZOS resample),
apply the EXIF orientation, convert to sRGB/RGB (alpha flattened onto the pad colour, 16-bit scaled,
embedded ICC profiles converted), make square (letterbox by default, pad colour a parameter; or
centre crop), resize to ``image_shape`` and encode a JPEG with no metadata (no EXIF, ICC, XMP or
comment), quality a parameter. HEIC/HEIF is read through pillow-heif, registered on first use.

Output objects
--------------
``s3://<bucket>/<input_prefix><source stem>.jpg`` (colliding stems get ``--<8 hex>``, see
:mod:`.naming`), ``ContentType: image/jpeg``, and this S3 user metadata:

``deeplens-source``
    The source path relative to the source folder, or for an ``s3://`` source the object key;
    percent-encoded (``urllib.parse.quote``) only where a character is outside printable ASCII or is
    ``%``, so ``urllib.parse.unquote`` always recovers it.
``deeplens-transform``
    Compact JSON ``{"w":W,"h":H,"orientation":O,"scale":s,"dx":ox,"dy":oy,"size":S}``: ``W`` x ``H``
    is the source size *after* its EXIF orientation ``O`` (1-8) is applied, and a point ``(x, y)`` of
    that oriented image lands at ``(x*s + ox, y*s + oy)`` in the ``S`` x ``S`` output (continuous
    pixel coordinates, the image spanning ``0..W``). Letterbox gives whole-pixel offsets >= 0, crop
    gives negative ones. The mapping is exact: the resample uses Pillow's ``box`` argument.
``deeplens-sha256``
    SHA-256 (hex) of the source file's bytes.
``deeplens-params``
    16 hex digits fingerprinting the options that shape the pixels (size, square mode, pad colour,
    quality, pipeline version; not the decode limits); an output is current when its sha256 and
    params both match.
``deeplens-pixels``
    SHA-256 of the decoded, oriented pixels: identical photos are processed and uploaded once.
``deeplens-source-etag``
    For ``s3://`` sources, the source object's ETag (lets a rerun skip the download).

Other objects the stage writes
------------------------------
``s3://<bucket>/reports/<run>/rejects.csv`` (``file,reason``, when something was rejected),
``s3://<bucket>/manifests/prelabelled.manifest`` (Ground Truth augmented manifest of the images that
came with boxes), ``s3://<bucket>/state/images-ledger.json`` (see :mod:`.ledger`) and, during a run,
``s3://<bucket>/state/plans/<run>/shard-NNNNN.json`` (each shard's photo list, deleted by collect).
The plan step lists the source and the output prefix and reads the ledger once per run and hands
each shard its own photos with what S3 holds for them: a rerun over unchanged photos costs two
listings and a few GETs whatever the number of shards, decodes nothing and uploads nothing.

Modules: :mod:`.geometry` (orientation and square transforms), :mod:`.rejects`, :mod:`.decode`,
:mod:`.square`, :mod:`.preprocess` (one file), :mod:`.boxes` (Ground Truth / Pascal VOC boxes),
:mod:`.sources`, :mod:`.naming`, :mod:`.store` (S3), :mod:`.ledger`, :mod:`.plan` (shards),
:mod:`.shard` (run a shard),
:mod:`.collect` (merge, reports, verdict), :mod:`.progress`; ``python -m deeplens_pipeline.images``
is the command line.
"""

from typing import Any

from deeplens_pipeline.images.geometry import IMAGE_SHAPES, Transform, plan_square

__all__ = ["IMAGE_SHAPES", "PreprocessOptions", "Transform", "plan_square", "preprocess_file"]


def __getattr__(name: str) -> Any:
    """Pillow-backed names load on first use, so importing the package stays cheap."""
    if name in {"PreprocessOptions", "preprocess_file"}:
        from deeplens_pipeline.images import preprocess

        return getattr(preprocess, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
